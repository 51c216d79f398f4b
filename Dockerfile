# syntax=docker/dockerfile:1
# omnitok serve in a container: `docker build -t omnitok .` then, with the bearer token in ./token,
#   docker run --rm -p 8001:8001 -v "$PWD/token:/run/secrets/omnitok-token:ro" omnitok
# (Docker Compose and Swarm secrets mount at that path too: a secret named omnitok-token.)
#
# The server listens on every interface of the container, so it requires the token: clients send
# `Authorization: Bearer <token>` (the probes /healthz and /readyz need none). Without the file it
# does not start. To answer only the names clients use, run it with the whole CMD below plus
# `--allowed-host api.example.com --allowed-host 127.0.0.1` (the second for the HEALTHCHECK).
#
# Two stages. The builder installs omnitok with its serve and cache extras into a virtual
# environment and bakes the tokenizer files in with `omnitok bundle install` (a bundle made from a
# recipe in bundles/, or your own archive: --build-arg OMNITOK_BUNDLE=tokenizers.tar.gz with the
# archive in the build context). The runtime stage copies both, runs as a non-root user, and never
# reaches a hub at run time (HF_HUB_OFFLINE=1).
ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim AS builder
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY omnitok ./omnitok
COPY bundles ./bundles
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --upgrade pip \
    && /opt/venv/bin/pip install '.[serve,cache]'
ARG OMNITOK_BUNDLE_RECIPE=default
ARG OMNITOK_BUNDLE=
# Your archive when OMNITOK_BUNDLE names one; otherwise a placeholder file that is not used.
COPY ${OMNITOK_BUNDLE:-pyproject.toml} /tmp/bundle-arg
ENV OMNITOK_HOME=/opt/omnitok HF_HOME=/opt/omnitok/hf
RUN if [ -n "${OMNITOK_BUNDLE}" ]; then mv /tmp/bundle-arg /tmp/tokenizers.tar.gz; \
    else /opt/venv/bin/omnitok bundle create --recipe "${OMNITOK_BUNDLE_RECIPE}" -o /tmp/tokenizers.tar.gz; fi \
    && /opt/venv/bin/omnitok bundle install /tmp/tokenizers.tar.gz --hf-cache \
    && /opt/venv/bin/omnitok bundle list \
    && rm -f /tmp/tokenizers.tar.gz /tmp/bundle-arg \
    && /opt/venv/bin/python -m compileall -q /opt/venv/lib

FROM python:${PYTHON_VERSION}-slim AS runtime
RUN groupadd --system --gid 10001 omnitok \
    && useradd --system --uid 10001 --gid omnitok --home-dir /home/omnitok --create-home omnitok
COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /opt/omnitok /opt/omnitok
ENV PATH=/opt/venv/bin:$PATH \
    OMNITOK_HOME=/opt/omnitok \
    HF_HOME=/opt/omnitok/hf \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    XDG_CACHE_HOME=/home/omnitok/.cache \
    PYTHONUNBUFFERED=1
USER 10001:10001
WORKDIR /home/omnitok
EXPOSE 8001
# Liveness from inside the container (the slim image has no curl): /healthz answers 200.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8001/healthz', timeout=4).status != 200)"]
ENTRYPOINT ["omnitok", "serve"]
CMD ["--host", "0.0.0.0", "--port", "8001", "--auth-token-file", "/run/secrets/omnitok-token"]
