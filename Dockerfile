# syntax=docker/dockerfile:1
# One multi-stage build for the three services; docker-compose.yml picks a target each.

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --workspace --bins \
 && mkdir -p /out \
 && cp target/release/booking-svc target/release/assign-svc target/release/notify-svc target/release/booking-certs /out/

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /app --create-home app
COPY --from=build /out/ /usr/local/bin/
WORKDIR /app
USER app
ENV LOG_FORMAT=json RUST_LOG=info

FROM runtime AS booking-svc
ENV LISTEN_ADDR=0.0.0.0:50051
EXPOSE 50051
HEALTHCHECK --interval=5s --timeout=3s --retries=10 CMD ["booking-svc", "--health-probe"]
ENTRYPOINT ["booking-svc"]

FROM runtime AS assign-svc
ENV LISTEN_ADDR=0.0.0.0:50052
EXPOSE 50052
HEALTHCHECK --interval=5s --timeout=3s --retries=10 CMD ["assign-svc", "--health-probe"]
ENTRYPOINT ["assign-svc"]

FROM runtime AS notify-svc
ENV LISTEN_ADDR=0.0.0.0:50053 MAIL_DIR=/app/mail
EXPOSE 50053
HEALTHCHECK --interval=5s --timeout=3s --retries=10 CMD ["notify-svc", "--health-probe"]
ENTRYPOINT ["notify-svc"]

# One-shot: a local CA and the services' certificates (docker-compose.yml's `certs`).
FROM runtime AS certs
USER root
ENTRYPOINT ["booking-certs"]
