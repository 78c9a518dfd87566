# syntax=docker/dockerfile:1
# One image for every canary-guard component, and a webhook variant that carries kubectl.
#   docker build -t canary-guard .                      # exporter, rules, gate, dashboard, ...
#   docker build --target webhook -t canary-guard-webhook .
# Both run as the unprivileged user 10001 and work with a read-only root filesystem (the
# Kubernetes manifests in deploy/kubernetes mount /tmp and the webhook's data directory).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# -- build: install the package and its dependencies into a virtualenv ----------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/canary-guard
WORKDIR /src
COPY pyproject.toml README.md ./
COPY canary_guard/ canary_guard/
COPY exporter/ exporter/
COPY rules/ rules/
COPY webhook/ webhook/
COPY sandbox/ sandbox/
COPY demo/ demo/
COPY gate/ gate/
COPY dashboard/ dashboard/
COPY rollout/ rollout/
RUN /opt/canary-guard/bin/pip install . \
 && /opt/canary-guard/bin/canary-guard --version

# -- kubectl: from the Kubernetes project's signed apt repository, pinned to one minor ------
# (Debian bookworm's kubernetes-client is 1.20: too old for any supported cluster. Keep
# KUBECTL_MINOR within one minor version of your API servers.)
FROM debian:bookworm-slim AS kubectl
ARG KUBECTL_MINOR=v1.32
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl gnupg \
 && curl -fsSL "https://pkgs.k8s.io/core:/stable:/${KUBECTL_MINOR}/deb/Release.key" \
    | gpg --dearmor -o /usr/share/keyrings/kubernetes.gpg \
 && echo "deb [signed-by=/usr/share/keyrings/kubernetes.gpg] https://pkgs.k8s.io/core:/stable:/${KUBECTL_MINOR}/deb/ /" \
    > /etc/apt/sources.list.d/kubernetes.list \
 && apt-get update \
 && apt-get install -y --no-install-recommends kubectl \
 && kubectl version --client

# -- runtime: the package, no compilers, no pip cache, non-root ------------------------------
FROM ${PYTHON_IMAGE} AS runtime
ENV PATH=/opt/canary-guard/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
RUN groupadd --system --gid 10001 canary \
 && useradd --system --uid 10001 --gid canary --home-dir /nonexistent --shell /usr/sbin/nologin canary \
 && mkdir -p /var/lib/canary-guard /etc/canary-guard \
 && chown canary:canary /var/lib/canary-guard
COPY --from=build /opt/canary-guard /opt/canary-guard
USER 10001:10001
EXPOSE 9111 9112 9113 9114
ENTRYPOINT ["canary-guard"]
CMD ["--help"]

# -- webhook: runtime + kubectl for `kubectl rollout undo` (and for `rollout run`, which sets weights) --
FROM runtime AS webhook
COPY --from=kubectl /usr/bin/kubectl /usr/local/bin/kubectl
CMD ["webhook", "--plan=/etc/canary-guard/plan.yaml", "--listen=0.0.0.0:9112"]

# -- the default target: the plain image (exporter and the other commands) ------------------
FROM runtime AS canary-guard
CMD ["exporter", "--plan=/etc/canary-guard/plan.yaml", "--listen=0.0.0.0:9111"]
