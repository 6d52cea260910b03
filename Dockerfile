# syntax=docker/dockerfile:1.7
# kubechat's image: a release build (dependencies cached by BuildKit between builds), then a distroless runtime with
# CA certificates and glibc, running as a non-root user. Multi-arch: `docker buildx build --platform
# linux/amd64,linux/arm64 .` builds each architecture natively or under QEMU.

FROM docker.io/library/rust:1.95-bookworm AS build
WORKDIR /src
# The manifest and lock file first, so a source change does not refetch the dependencies.
COPY Cargo.toml Cargo.lock build.rs rustfmt.toml ./
COPY src ./src
# The workspace's other member (the benchmarks) must be there for cargo to read the workspace; it is not built.
COPY bench ./bench
COPY prompts ./prompts
COPY testdata/scenarios ./testdata/scenarios
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --locked --profile dist --bin kubechat \
    && install -D -m 0755 target/dist/kubechat /out/kubechat

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/kubechat /usr/local/bin/kubechat
COPY prompts/ask.md prompts/diagnose.md /etc/kubechat/prompts/
USER 65532:65532
EXPOSE 8080
ENV KUBECHAT_PROMPTS=/etc/kubechat/prompts
ENTRYPOINT ["/usr/local/bin/kubechat"]
CMD ["serve"]
