# The rtsync image: one static-enough binary on a slim Debian, run as an unprivileged user.
#   docker build -t rtsync:0.1.0 .
# Not built here (no Docker on the development machines); the chart in deploy/helm/rtsync
# runs it as `rtsync serve`.

FROM rust:1.95-bookworm AS build
# librdkafka is built from source by rdkafka's cmake-build feature.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      cmake libcurl4-openssl-dev libssl-dev zlib1g-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin rtsync \
 && install -Dm755 target/release/rtsync /out/rtsync

FROM debian:bookworm-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      ca-certificates libcurl4 libssl3 zlib1g \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 rtsync \
 && useradd --uid 10001 --gid rtsync --home-dir /var/lib/rtsync --create-home rtsync
COPY --from=build /out/rtsync /usr/local/bin/rtsync
USER 10001:10001
WORKDIR /var/lib/rtsync
# API and web UI; Prometheus metrics (--metrics-listen).
EXPOSE 7878 9464
ENTRYPOINT ["/usr/local/bin/rtsync"]
CMD ["serve", "--listen", "0.0.0.0:7878", "--metrics-listen", "0.0.0.0:9464", "--data-dir", "/var/lib/rtsync"]
