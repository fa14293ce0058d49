# syntax=docker/dockerfile:1
# regproxy image: built on the official Rust image, shipped as one static
# binary on an empty (scratch) base, running as a non-root user.
#
#   docker build -t regproxy .
#   docker run --rm -p 5043:5043 -p 9090:9090 \
#     -v $PWD/regproxy.toml:/etc/regproxy/regproxy.toml:ro \
#     -v $PWD/auth:/etc/regproxy/auth:ro -v $PWD/tls:/etc/regproxy/tls:ro regproxy
#
# Mount the config, the htpasswd file and the certificates; paths inside the
# config are as mounted. SIGTERM (docker stop, Kubernetes) drains: no new
# connections, in-flight requests finish within shutdown_timeout.
# io_uring needs a seccomp profile that allows it (Docker's default blocks
# it since 25.0); otherwise regproxy logs it and runs on epoll.

ARG RUST_VERSION=1.85
FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY . .
# Static glibc binary: runs on scratch, no loader or libc in the image.
RUN RUSTFLAGS="-C target-feature=+crt-static" \
    cargo build --release --locked --target x86_64-unknown-linux-gnu --bin regproxy \
 && install -D target/x86_64-unknown-linux-gnu/release/regproxy /out/regproxy

FROM scratch AS runtime
COPY --from=build /out/regproxy /regproxy
# distroless's "nonroot": no passwd file needed for a numeric user.
USER 65532:65532
EXPOSE 5043 9090
STOPSIGNAL SIGTERM
ENTRYPOINT ["/regproxy"]
CMD ["--config", "/etc/regproxy/regproxy.toml"]
