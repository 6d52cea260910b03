// Validates custom resources against their projects' CRD schemas, as compiled into the @kubernetes-models packages
// (scripts/lint-tools installs them): node validate-custom-resources.mjs NODE_PREFIX < objects.json, where
// objects.json is a JSON array of objects. Prints one line per problem and exits 1 if there is any; a kind it has no
// schema for is a problem too, so nothing passes unchecked.
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";
import { join } from "node:path";

const prefix = process.argv[2];
if (!prefix) {
  console.error("usage: node validate-custom-resources.mjs NODE_PREFIX < objects.json");
  process.exit(2);
}
// apiVersion/kind → [package, module path inside it].
const models = {
  "argoproj.io/v1alpha1/Application": ["argo-cd", "argoproj.io/v1alpha1/Application.js"],
  "monitoring.coreos.com/v1/ServiceMonitor": ["prometheus-operator", "monitoring.coreos.com/v1/ServiceMonitor.js"],
  "cilium.io/v2/CiliumNetworkPolicy": ["cilium", "cilium.io/v2/CiliumNetworkPolicy.js"],
  "gateway.networking.k8s.io/v1/HTTPRoute": ["gateway-api", "gateway.networking.k8s.io/v1/HTTPRoute.js"],
  "cert-manager.io/v1/Certificate": ["cert-manager", "cert-manager.io/v1/Certificate.js"],
};
const objects = JSON.parse(readFileSync(0, "utf8"));
let problems = 0;
for (const object of objects) {
  const id = `${object.apiVersion}/${object.kind}`;
  const name = `${object.kind} ${object.metadata?.name}`;
  const model = models[id];
  if (!model) {
    console.log(`${name}: no schema for ${id}`);
    problems++;
    continue;
  }
  const url = pathToFileURL(join(prefix, "node_modules/@kubernetes-models", model[0], model[1]));
  const module = await import(url.href);
  try {
    new module[object.kind](object).validate();
    console.log(`${name}: valid ${id}`);
  } catch (error) {
    console.log(`${name}: ${error.message}`);
    problems++;
  }
}
process.exit(problems ? 1 : 0);
