# syntax=docker/dockerfile:1
# Encore's container image: `encore serve` as a non-root user on a read-only root file system.
#
#   make image                                   # podman, local Debian base, offline wheels (deploy/README.md)
#   docker build -t encore:0.1.0 .               # anywhere python:3.11-slim and PyPI are reachable
#   docker run --read-only -p 50051:50051 -v "$PWD/bundles/<version>:/bundles/current:ro" encore:0.1.0
#
# Build arguments:
#   BASE          base image with python3 (3.11) and its venv module; both stages use it, so the
#                 venv's interpreter link (/usr/bin/python3 or /usr/local/bin/python3) stays valid.
#   PIP_NO_INDEX  "1": install only from build/image/wheels (what `make image` fills with `pip wheel`
#                 on the host); empty: from PyPI, the wheelhouse first when it exists.
#   BUNDLE        a bundle directory inside the build context to bake in as /bundles/current
#                 (`make image BUNDLE=bundles/<version>` stages it under build/image/bundle, since
#                 .dockerignore keeps bundles/ out); default: none, mount one at /bundles/current
#                 or a volume at /bundles holding a `current` link (deploy/kubernetes).
ARG BASE=python:3.11-slim

FROM ${BASE} AS build
ARG PIP_NO_INDEX=
ENV PIP_NO_INDEX=${PIP_NO_INDEX} \
    PIP_FIND_LINKS=/wheels \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
# The glob lets the wheelhouse be absent (pyproject.toml always matches); it lands in /wheels.
COPY pyproject.toml build/image/wheel[s] /wheels/
COPY pyproject.toml /src/
# The dependencies first, in their own layer: a source change does not reinstall them.
RUN python3 -m venv /opt/encore/venv \
 && python3 -c 'import tomllib; print("\n".join(tomllib.load(open("/src/pyproject.toml", "rb"))["project"]["dependencies"]))' \
      > /tmp/requirements.txt \
 && /opt/encore/venv/bin/pip install --quiet -r /tmp/requirements.txt
COPY protos/ /src/protos/
COPY cli/ /src/cli/
COPY common/ /src/common/
COPY serving/ /src/serving/
COPY ranking/ /src/ranking/
COPY features/ /src/features/
COPY models/ /src/models/
COPY offline/ /src/offline/
COPY experimentation/ /src/experimentation/
COPY loadtests/ /src/loadtests/
COPY deploy/image/healthcheck.py /opt/encore/healthcheck.py
# Bytecode compiled here: the runtime's root file system is read-only. pip and setuptools are not
# needed at run time; neither are the libraries' own test suites.
RUN /opt/encore/venv/bin/pip install --quiet --no-deps /src \
 && /opt/encore/venv/bin/pip uninstall --quiet --yes pip setuptools \
 && site=$(/opt/encore/venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])') \
 && rm -rf "$site"/numpy/*/tests "$site"/numpy/tests "$site"/scipy/*/tests "$site"/scipy/*/*/tests \
      "$site"/pyarrow/tests "$site"/sklearn/*/tests "$site"/sklearn/tests "$site"/matplotlib/tests \
      "$site"/onnx/backend/test "$site"/pyarrow/include "$site"/numpy/_core/include \
 && find /opt/encore -name '*.pyc' -delete \
 && /opt/encore/venv/bin/python -m compileall -q -j 0 /opt/encore >/dev/null \
 && /opt/encore/venv/bin/encore --help >/dev/null

ARG BUNDLE=deploy/image/no-bundle
COPY ${BUNDLE}/ /bundles/current/

FROM ${BASE} AS runtime
LABEL org.opencontainers.image.title="encore" \
      org.opencontainers.image.description="Encore ranking service (encore serve over gRPC)"
# uid/gid 10001 as in deploy/kubernetes/deployment.yaml. /var/lib/encore (the working directory:
# exposures/, outcomes/, captures/) and /tmp (multiprocess metrics, matplotlib's cache) are the
# only places it writes: declared volumes, so `--read-only` works as is.
RUN groupadd --gid 10001 encore \
 && useradd --uid 10001 --gid 10001 --home-dir /var/lib/encore --no-create-home \
      --shell /usr/sbin/nologin encore \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/encore \
 && chmod 1777 /tmp
COPY --from=build /opt/encore /opt/encore
COPY --from=build /bundles /bundles
ENV PATH=/opt/encore/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/var/lib/encore \
    MPLCONFIGDIR=/tmp/matplotlib \
    ENCORE_HEALTH_TARGET=127.0.0.1:50051
VOLUME ["/var/lib/encore", "/tmp"]
WORKDIR /var/lib/encore
USER 10001:10001
EXPOSE 50051 9464
HEALTHCHECK --interval=10s --timeout=3s --start-period=120s --retries=3 \
  CMD ["/opt/encore/venv/bin/python", "/opt/encore/healthcheck.py"]
ENTRYPOINT ["encore"]
CMD ["serve", "--bundle", "/bundles/current", "--host", "0.0.0.0", "--port", "50051", "--metrics-port", "9464"]
