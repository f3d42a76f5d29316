# remit: the gRPC authorisation service, with the compiled policy baked in.
#   docker build -t remit .
#   docker run -p 50051:50051 -p 9464:9464 remit
# Settings are REMIT_* / OTEL_* environment variables (README "Deploy").
# tests/integration/test_container.py checks every COPY source exists and runs the entrypoint in a
# virtualenv built by the same RUN line.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY scripts/build-venv scripts/build-venv
COPY service service
COPY adapters adapters
COPY policies/generated policies/generated
RUN scripts/build-venv /opt/remit /src

FROM ${PYTHON_IMAGE}
RUN groupadd --system --gid 10001 remit \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin remit
COPY --from=build /opt/remit /opt/remit
COPY --from=build /src/policies/generated /srv/remit/policies/generated
# Plaintext gRPC off loopback is refused unless asked for (REMIT_ALLOW_PLAINTEXT=1 below);
# in production mount a cert and key and set REMIT_TLS_CERT / REMIT_TLS_KEY instead (and
# REMIT_TLS_CLIENT_CA with REMIT_ACCESS_FILE for mTLS).
ENV PATH="/opt/remit/bin:${PATH}" \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    REMIT_POLICY_DIR=/srv/remit/policies/generated \
    REMIT_ADDRESS=0.0.0.0:50051 \
    REMIT_ALLOW_PLAINTEXT=1 \
    REMIT_METRICS_ADDRESS=0.0.0.0:9464 \
    REMIT_SHUTDOWN_GRACE_SECONDS=10
WORKDIR /srv/remit
USER 10001:10001
EXPOSE 50051 9464
HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 \
  CMD ["remit", "health", "--timeout", "2"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["remit"]
CMD ["serve"]
