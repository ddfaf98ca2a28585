# sinkhole in a container: a release build on Debian bookworm, run as an unprivileged user
# that may still bind port 53.
#
#   docker build -t sinkhole .
#   docker run -d --name sinkhole -p 53:53/udp -p 53:53/tcp sinkhole
#
# The README's "Docker" section shows the volumes for your own config, lists and events.

# ---- build -------------------------------------------------------------------------------
FROM rust:1-bookworm AS build
WORKDIR /src

# The whole crate (the .dockerignore keeps target/ and var/ out), so Cargo.toml may name
# benches, tests or examples without this file having to follow. --locked: Cargo.lock decides
# every dependency version, as in CI.
COPY . .
RUN cargo build --release --locked \
    && install -D -m 0755 target/release/sinkhole /out/sinkhole

# ---- run ---------------------------------------------------------------------------------
FROM debian:bookworm-slim

# libcap2-bin provides setcap; ca-certificates gives the image a system trust store.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libcap2-bin ca-certificates \
    && rm -rf /var/lib/apt/lists/*

COPY --from=build /out/sinkhole /usr/local/bin/sinkhole

# Port 53 is below 1024: the file capability lets the non-root user bind it. The container
# must keep NET_BIND_SERVICE (it is in Docker's default set); with --cap-drop ALL, add it back
# with --cap-add NET_BIND_SERVICE or the binary will not start.
RUN setcap cap_net_bind_service=+ep /usr/local/bin/sinkhole

# A fixed UID and GID, so a host folder mounted on /var/lib/sinkhole can be chowned to them.
RUN groupadd --system --gid 10053 sinkhole \
    && useradd --system --uid 10053 --gid sinkhole --no-create-home \
        --home-dir /var/lib/sinkhole --shell /usr/sbin/nologin sinkhole

# The repository's layout, so the default config's relative list paths
# (../blocklists/remus.txt) resolve to /etc/sinkhole/blocklists/.
COPY config/sinkhole.toml /etc/sinkhole/config/sinkhole.toml
COPY blocklists/ /etc/sinkhole/blocklists/
RUN mkdir -p /var/lib/sinkhole \
    && chown sinkhole:sinkhole /var/lib/sinkhole \
    && chmod 0750 /var/lib/sinkhole

VOLUME ["/etc/sinkhole/config", "/etc/sinkhole/blocklists", "/var/lib/sinkhole"]
EXPOSE 53/udp 53/tcp

USER sinkhole
ENTRYPOINT ["sinkhole"]
CMD ["serve", "--config", "/etc/sinkhole/config/sinkhole.toml", "--listen", "0.0.0.0:53", "--events", "/var/lib/sinkhole/sinkhole-events.ndjson"]
