# syntax=docker/dockerfile:1
# ddtwatch: multi-stage build, static-ish binary on a distroless runtime, non-root.
# (Reviewed, not built here: images cannot be pulled on the development machines.)

FROM rust:1.89-bookworm AS build
# librdkafka is built from source by rdkafka-sys (bundled): needs a C toolchain, make, perl; TLS
# is configured by cmake and links the system OpenSSL (libssl-dev here, libssl3 in the
# distroless/cc runtime below); libcurl (OAUTHBEARER/OIDC) and zstd are built in statically.
RUN apt-get update && apt-get install -y --no-install-recommends build-essential perl cmake libssl-dev pkg-config \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Dependencies first, so source edits do not rebuild librdkafka.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src benches && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && for b in stats engine memory replay_throughput kafka_consume notify_latency; do echo 'fn main() {}' > benches/$b.rs; done \
    && cargo build --release --locked && rm -rf src benches
COPY . .
RUN touch src/main.rs src/lib.rs && cargo build --release --locked --bin ddtwatch \
    && install -D -m 0755 target/release/ddtwatch /out/ddtwatch \
    && install -D -m 0644 config/ddtwatch.yaml /out/etc/ddtwatch/ddtwatch.yaml \
    && cp -r config/profiles /out/etc/ddtwatch/profiles

# glibc + OpenSSL (libssl3) + CA certificates runtime without shell or package manager; uid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/ddtwatch /usr/local/bin/ddtwatch
COPY --from=build /out/etc/ddtwatch /etc/ddtwatch
USER 65532:65532
# state_dir (audit log, snapshots): mount a volume here.
VOLUME ["/var/lib/ddtwatch"]
EXPOSE 9464
ENTRYPOINT ["/usr/local/bin/ddtwatch"]
CMD ["run", "--config", "/etc/ddtwatch/ddtwatch.yaml"]
