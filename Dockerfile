# syntax=docker/dockerfile:1
# natter in a container: `docker build -t natter .`, then
#   docker run -d --name natter -p 1883:1883 -p 8083:8083 -p 8080:8080 -v natter-data:/var/lib/natter natter
#   echo alice-pw | docker exec -i natter natter --config /etc/natter/natter.toml user add alice --password-stdin
# The config is deploy/natter.container.toml; mount another file over /etc/natter/natter.toml to
# change it. deploy/README.md says how this file was checked.

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
# The registry and target caches survive between builds (BuildKit); the binary is copied out of
# the cached target folder.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
    && cp target/release/natter /usr/local/bin/natter

FROM debian:bookworm-slim
# libssl3: the Cassandra driver's TLS; ca-certificates: FCM, APNs, S3 over https; curl: the
# health check. Unpinned on purpose: the image takes Debian's security updates when rebuilt.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl libssl3 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 natter \
    && useradd --system --uid 10001 --gid natter --home-dir /var/lib/natter \
       --shell /usr/sbin/nologin natter \
    && install -d -o natter -g natter -m 0750 /var/lib/natter
COPY --from=build /usr/local/bin/natter /usr/local/bin/natter
COPY deploy/natter.container.toml /etc/natter/natter.toml
USER 10001:10001
WORKDIR /var/lib/natter
VOLUME /var/lib/natter
# MQTT, MQTT over WebSocket (/mqtt), HTTP API.
EXPOSE 1883 8083 8080
# Any non-zero exit (curl --fail gives 22 on an HTTP error) marks the container unhealthy.
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s --retries=3 \
    CMD ["curl", "--fail", "--silent", "--show-error", "--output", "/dev/null", "http://127.0.0.1:8080/healthz"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["natter"]
CMD ["serve", "--config", "/etc/natter/natter.toml"]
