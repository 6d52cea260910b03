# syntax=docker/dockerfile:1.7
# kubechat's image for linux/amd64 and linux/arm64, built on the build machine's own architecture for both (a cross
# linker for the other, never emulation), then a distroless runtime (CA certificates and glibc) running as non-root.
# The dependencies are built in their own layer from cargo-chef's recipe, so a registry layer cache (the image
# workflow's) rebuilds only kubechat when only kubechat changed. Base images are pinned by digest on Debian 13 (trixie),
# the builder's glibc no newer than the runtime's.

FROM --platform=$BUILDPLATFORM docker.io/library/rust:1.95-trixie@sha256:f49565f188ee00bc2a18dd418183f2c5f23ef7d6e691890517ed341a598f67c3 AS chef
WORKDIR /src
ARG BUILDARCH
# The cross toolchain for the other architecture: its linker and the C compiler for crates with C code (ring,
# SQLite). Debian's gcc already answers to the build machine's own triplet (x86_64-linux-gnu-gcc on amd64).
# $cross is split into package names on purpose. Package versions are not pinned: the pinned image fixes the Debian
# release, and its security updates are wanted.
# hadolint ignore=DL3008,SC2086
RUN case "$BUILDARCH" in amd64) cross="gcc-aarch64-linux-gnu libc6-dev-arm64-cross" ;; \
      arm64) cross="gcc-x86-64-linux-gnu libc6-dev-amd64-cross" ;; \
      *) echo "unsupported build architecture $BUILDARCH" >&2; exit 1 ;; esac \
    && apt-get update \
    && apt-get install -y --no-install-recommends $cross \
    && rm -rf /var/lib/apt/lists/* \
    && rustup target add aarch64-unknown-linux-gnu x86_64-unknown-linux-gnu \
    && cargo install cargo-chef --locked --version 0.1.77
ENV CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
    CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc \
    CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER=x86_64-linux-gnu-gcc \
    CC_x86_64_unknown_linux_gnu=x86_64-linux-gnu-gcc

FROM chef AS plan
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS build
ARG TARGETARCH
# The dependencies, from the recipe only: this layer changes only when Cargo.toml or Cargo.lock do.
COPY --from=plan /src/recipe.json recipe.json
RUN case "$TARGETARCH" in arm64) triple=aarch64-unknown-linux-gnu ;; amd64) triple=x86_64-unknown-linux-gnu ;; \
      *) echo "unsupported architecture $TARGETARCH" >&2; exit 1 ;; esac \
    && echo "$triple" > /triple \
    && cargo chef cook --locked --profile dist --target "$triple" --bin kubechat --recipe-path recipe.json
# kubechat itself. build.rs compiles the demo cluster (testdata/scenarios) into the binary.
COPY Cargo.toml Cargo.lock build.rs rustfmt.toml ./
COPY src ./src
# The workspace's other member (the benchmarks) must be there for cargo to read the workspace; it is not built.
COPY bench ./bench
COPY prompts ./prompts
COPY testdata/scenarios ./testdata/scenarios
RUN cargo build --locked --profile dist --target "$(cat /triple)" --bin kubechat \
    && install -D -m 0755 "target/$(cat /triple)/dist/kubechat" /out/kubechat

FROM gcr.io/distroless/cc-debian13:nonroot@sha256:e792ab3d241a468a4fd7519ddbbebe66b49b5f365771716ea688ad40b6c6f1c2
COPY --from=build /out/kubechat /usr/local/bin/kubechat
COPY prompts/ask.md prompts/diagnose.md /etc/kubechat/prompts/
USER 65532:65532
EXPOSE 8080
ENV KUBECHAT_PROMPTS=/etc/kubechat/prompts
ENTRYPOINT ["/usr/local/bin/kubechat"]
CMD ["serve"]
