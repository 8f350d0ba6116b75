# motion-meta as a service: `poll` on an interval with /metrics, /livez and /readyz on port 9464.
#   docker build -t motion-meta .
#   docker run --rm -v motion-meta:/var/lib/motion-meta -p 9464:9464 -e META_GRAPH_URL=... motion-meta
# No secret is baked in: tokens come from the secrets store (a mounted file or AWS Secrets Manager).

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY motion_meta_cli ./motion_meta_cli
RUN pip install --no-cache-dir build==1.2.2 && python -m build --wheel --outdir /dist

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MOTION_META_HOME=/var/lib/motion-meta \
    MOTION_META_LOG_FORMAT=json
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/motion-meta --create-home motion
COPY --from=build /dist/ /tmp/dist/
# Only the runtime dependencies, with the Redis and AWS extras for production backends. The wheel built
# above is the pinned artifact; its dependencies' ranges are the project's (pyproject.toml).
# hadolint ignore=DL3013
RUN wheel="$(find /tmp/dist -name 'motion_meta-*.whl')" \
    && pip install --no-cache-dir "${wheel}[redis,aws]" \
    && rm -rf /tmp/dist
USER 10001:10001
WORKDIR /var/lib/motion-meta
VOLUME ["/var/lib/motion-meta"]
EXPOSE 9464
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9464/livez', timeout=4)"]
ENTRYPOINT ["motion-meta"]
CMD ["poll", "--interval", "60", "--metrics-port", "9464"]
