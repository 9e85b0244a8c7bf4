# Multi-stage build: compile with the full toolchain, ship a small Debian image with only
# the binary and CA certificates. No native OpenSSL: TLS is rustls with aws-lc-rs.
FROM rust:1.95-bookworm AS build
WORKDIR /src
# Dependencies first, so that a source change does not rebuild them.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src/bin benches && echo 'fn main() {}' > src/main.rs && echo '' > src/lib.rs \
    && echo 'fn main() {}' > src/bin/lookout-bench.rs \
    && cargo build --release --bin lookout || true
COPY . .
RUN touch src/main.rs src/lib.rs && cargo build --release --bin lookout

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* && useradd --system --uid 10001 --home /var/lib/lookout lookout \
    && mkdir -p /var/lib/lookout && chown lookout /var/lib/lookout
COPY --from=build /src/target/release/lookout /usr/local/bin/lookout
USER lookout
WORKDIR /var/lib/lookout
ENV PORT=3000
EXPOSE 3000
HEALTHCHECK --interval=10s --timeout=3s CMD ["/bin/sh", "-c", "exec 3<>/dev/tcp/127.0.0.1/$PORT"]
ENTRYPOINT ["lookout"]
CMD ["serve"]
