// kubechat's web chat: no framework, no CDN. Everything from the model or the cluster is inserted as text, never as
// HTML; the small Markdown subset below builds DOM nodes itself.
"use strict";

const form = document.getElementById("ask");
const select = document.getElementById("namespace");
const clusterSelect = document.getElementById("cluster");
const input = document.getElementById("question");
const submit = document.getElementById("submit");
const answers = document.getElementById("answers");
const template = document.getElementById("answer-template");

function intent() {
  return form.querySelector("input[name=intent]:checked").value;
}

form.querySelectorAll("input[name=intent]").forEach((radio) =>
  radio.addEventListener("change", () => {
    submit.textContent = intent() === "ask" ? "Ask" : "Diagnose";
  }),
);

// The HTTP API may want a bearer token (http.auth: token): asked once, kept for this tab only.
function authHeaders() {
  const token = sessionStorage.getItem("kubechat-token");
  return token ? { authorization: "Bearer " + token } : {};
}

// Fetches with the token; on 401, asks for one and tries again once.
async function authorizedFetch(url, options = {}) {
  const send = () => fetch(url, { ...options, headers: { ...(options.headers || {}), ...authHeaders() } });
  let response = await send();
  if (response.status === 401) {
    const token = window.prompt("kubechat needs an access token (ask your kubechat operator):");
    if (token) {
      sessionStorage.setItem("kubechat-token", token.trim());
      response = await send();
    }
  }
  return response;
}

// The clusters the asker may read; the picker shows only when there is a choice.
async function loadClusters() {
  try {
    const response = await authorizedFetch("clusters");
    const body = await response.json();
    const clusters = body.clusters || [];
    for (const cluster of clusters) {
      const option = document.createElement("option");
      option.value = cluster.name;
      option.textContent = cluster.name + (cluster.reachable === false ? " (not answering)" : "");
      if (cluster.default) option.selected = true;
      clusterSelect.appendChild(option);
    }
    clusterSelect.closest("label").hidden = clusters.length < 2;
  } catch (error) {
    // An older kubechat, or none reachable: questions go to the default cluster.
  }
}

// Which namespace list was asked for last: switching clusters twice quickly sends two requests, and only the last
// one's answer may fill the list (answers can arrive in either order).
let namespacesAsked = 0;

async function loadNamespaces() {
  const asked = ++namespacesAsked;
  select.replaceChildren();
  const options = [];
  try {
    const cluster = clusterSelect.value;
    const response = await authorizedFetch("namespaces" + (cluster ? "?cluster=" + encodeURIComponent(cluster) : ""));
    if (!response.ok) throw new Error("HTTP " + response.status);
    const body = await response.json();
    for (const name of body.namespaces || []) {
      const option = document.createElement("option");
      option.value = name;
      option.textContent = name;
      if (name === body.default) option.selected = true;
      options.push(option);
    }
  } catch (error) {
    const option = document.createElement("option");
    option.textContent = "(namespaces unavailable)";
    options.push(option);
  }
  if (asked === namespacesAsked) select.replaceChildren(...options);
}

// Markdown, safely: fenced code, inline code, bold, bullet and numbered lists, paragraphs. Text nodes only.
function renderMarkdown(target, text) {
  target.replaceChildren();
  const lines = text.split("\n");
  let list = null;
  let paragraph = null;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    if (line.trim().startsWith("```")) {
      const code = [];
      i++;
      while (i < lines.length && !lines[i].trim().startsWith("```")) code.push(lines[i++]);
      const pre = document.createElement("pre");
      const element = document.createElement("code");
      element.textContent = code.join("\n");
      pre.appendChild(element);
      target.appendChild(pre);
      list = paragraph = null;
      continue;
    }
    const item = line.match(/^\s*(?:[-*]|\d+[.)])\s+(.*)$/);
    if (item) {
      if (!list) {
        list = document.createElement(/^\s*\d/.test(line) ? "ol" : "ul");
        target.appendChild(list);
      }
      const li = document.createElement("li");
      inline(li, item[1]);
      list.appendChild(li);
      paragraph = null;
      continue;
    }
    if (!line.trim()) {
      list = paragraph = null;
      continue;
    }
    list = null;
    if (!paragraph) {
      paragraph = document.createElement("p");
      target.appendChild(paragraph);
    } else {
      paragraph.appendChild(document.createTextNode(" "));
    }
    inline(paragraph, line);
  }
}

function inline(target, text) {
  const parts = text.split(/(`[^`]+`|\*\*[^*]+\*\*)/);
  for (const part of parts) {
    if (part.startsWith("`") && part.endsWith("`") && part.length > 1) {
      const code = document.createElement("code");
      code.textContent = part.slice(1, -1);
      target.appendChild(code);
    } else if (part.startsWith("**") && part.endsWith("**") && part.length > 3) {
      const strong = document.createElement("strong");
      strong.textContent = part.slice(2, -2);
      target.appendChild(strong);
    } else if (part) {
      target.appendChild(document.createTextNode(part));
    }
  }
}

function showCommands(view, commands) {
  const section = view.querySelector(".commands");
  const list = section.querySelector("ul");
  list.replaceChildren();
  for (const command of commands || []) {
    const li = document.createElement("li");
    const badge = document.createElement("span");
    // "read-only", "mutating" or "review"; older answers carry only read_only.
    const label = command.label || (command.read_only ? "read-only" : "mutating");
    badge.className = "badge " + label;
    badge.textContent = label;
    const code = document.createElement("code");
    code.textContent = command.command;
    const copy = document.createElement("button");
    copy.type = "button";
    copy.className = "copy";
    copy.textContent = "Copy";
    copy.addEventListener("click", async () => {
      try {
        await navigator.clipboard.writeText(command.command);
        copy.textContent = "Copied";
      } catch (error) {
        copy.textContent = "Select and copy";
      }
    });
    li.append(badge, code, copy);
    if (command.note) {
      const warning = document.createElement("div");
      warning.className = "warning";
      warning.textContent = "⚠ " + command.note;
      li.appendChild(warning);
    }
    list.appendChild(li);
  }
  section.hidden = list.children.length === 0;
}

function showFindings(view, findings, answered) {
  const section = view.querySelector(".findings");
  const list = section.querySelector("ol");
  list.replaceChildren();
  for (const finding of findings || []) {
    const li = document.createElement("li");
    const headline = document.createElement("div");
    headline.className = "headline";
    headline.textContent = finding.headline;
    li.appendChild(headline);
    for (const link of finding.links || []) {
      const element = document.createElement("div");
      element.className = "link";
      element.textContent = link;
      li.appendChild(element);
    }
    if ((finding.evidence || []).length) {
      const pre = document.createElement("pre");
      pre.textContent = finding.evidence.join("\n");
      li.appendChild(pre);
    }
    list.appendChild(li);
  }
  if (!list.children.length && !answered) {
    const li = document.createElement("li");
    li.textContent = "kubechat found no problems.";
    list.appendChild(li);
  }
  section.hidden = list.children.length === 0;
}

function showGaps(view, gaps) {
  const section = view.querySelector(".gaps");
  const list = section.querySelector("ul");
  list.replaceChildren();
  for (const gap of gaps || []) {
    const li = document.createElement("li");
    li.textContent = "not read: " + gap;
    list.appendChild(li);
  }
  section.hidden = list.children.length === 0;
}

// Renders the answer's view, the same one every front-end shows: the model's answer when there is one, the notice
// when there is none, and always kubechat's findings with their evidence.
function finish(element, answer, started) {
  const view = answer.view || {};
  renderMarkdown(element.querySelector(".body"), view.answer || "");
  showFindings(element, view.findings, view.answer != null);
  showGaps(element, view.gaps);
  showCommands(element, answer.commands);
  element.querySelector(".context pre").textContent = answer.context || "";
  const notice = element.querySelector(".notice");
  if (view.notice) {
    notice.hidden = false;
    notice.textContent = view.notice;
  } else if (answer.truncated) {
    notice.hidden = false;
    notice.textContent = "The model's window was full: part of the context or the answer was cut.";
  }
  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  element.querySelector("footer").textContent = (view.footer || "") + " · " + seconds + " s";
}

function fail(view, message) {
  const notice = view.querySelector(".notice");
  notice.hidden = false;
  notice.textContent = message;
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const question = input.value.trim();
  if (intent() === "ask" && !question) {
    input.focus();
    return;
  }
  const view = template.content.firstElementChild.cloneNode(true);
  view.querySelector(".question").textContent =
    (intent() === "ask" ? "Ask: " : "Diagnose: ") +
    (question || "what is wrong in " + select.value + (clusterSelect.options.length > 1 ? " in " + clusterSelect.value : "") + "?");
  answers.prepend(view);
  submit.disabled = true;
  const started = performance.now();
  let text = "";
  try {
    const response = await authorizedFetch(intent(), {
      method: "POST",
      headers: { "content-type": "application/json", accept: "text/event-stream" },
      body: JSON.stringify({ question, namespace: select.value, cluster: clusterSelect.value || undefined }),
    });
    if (!response.ok) {
      const body = await response.json().catch(() => ({}));
      fail(view, (body.error || response.statusText) + (body.request_id ? " (request " + body.request_id + ")" : ""));
      return;
    }
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        let name = "message";
        const data = [];
        for (const line of block.split("\n")) {
          if (line.startsWith("event:")) name = line.slice(6).trim();
          else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
        }
        const payload = data.join("\n");
        if (name === "token") {
          text += payload;
          renderMarkdown(view.querySelector(".body"), text);
        } else if (name === "queued") {
          fail(view, "Waiting for the model: number " + payload + " in line");
        } else if (name === "answer") {
          view.querySelector(".notice").hidden = true;
          finish(view, JSON.parse(payload), started);
        } else if (name === "error") {
          const body = JSON.parse(payload);
          fail(view, body.error + " (request " + body.request_id + ")");
        }
      }
    }
  } catch (error) {
    fail(view, "kubechat did not answer: " + error);
  } finally {
    submit.disabled = false;
  }
});

clusterSelect.addEventListener("change", loadNamespaces);
loadClusters().then(loadNamespaces);
