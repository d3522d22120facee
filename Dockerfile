# syntax=docker/dockerfile:1
#
# One image for both programs (it holds the `training` extra too):
#   docker build -t movie-recommender .
#   docker run --rm -v models:/models movie-recommender python -m training --if-missing   # train
#   docker run --rm -p 8000:8000 -v models:/models:ro -v state:/state -e API_TOKEN=... movie-recommender  # serve
# (listening beyond loopback, the server needs API_TOKEN for its write routes, or
# ALLOW_ANONYMOUS_WRITES=true). docker-compose.yml wires them together, with PostgreSQL.
#
# Stages: `deps` (third-party packages in a venv; rebuilt only when pyproject.toml changes),
# `wheel` (the project's own code), `runtime` (the venv, then the project wheel on top, so a
# code change rebuilds only a small final layer).

ARG PYTHON_IMAGE=python:3.11-slim

# ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS base
ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    VIRTUAL_ENV=/opt/venv
ENV PATH="${VIRTUAL_ENV}/bin:${PATH}"

# ---------------------------------------------------------------------------------------------
# Dependencies only: pyproject.toml is the one file copied, the requirement list (dependencies
# plus the `training` extra) is read from it, so this large layer is cached across code changes.
FROM base AS deps
WORKDIR /build
RUN python -m venv "${VIRTUAL_ENV}"
COPY pyproject.toml ./
RUN python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; print(*p['dependencies'], *p['optional-dependencies']['training'], sep=chr(10))" > requirements.txt \
    && "${VIRTUAL_ENV}/bin/pip" install --no-cache-dir -r requirements.txt

# ---------------------------------------------------------------------------------------------
# The project itself, as a wheel (no dependencies: they are in `deps`).
FROM base AS wheel
WORKDIR /build
COPY pyproject.toml README.md ./
COPY app ./app
COPY training ./training
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

# ---------------------------------------------------------------------------------------------
FROM base AS runtime
LABEL org.opencontainers.image.title="movie-recommender" \
      org.opencontainers.image.description="Movie recommendations over HTTP from a Keras model trained on MovieLens"

# HOST: listen on every interface of the container. MODEL_DIR, MOVIELENS_CACHE_DIR, STATE_DIR:
# the mount points of the model, download-cache and (SQLite) feedback volumes. Keras and
# matplotlib write their config and caches under /tmp, so the image also works when run as an
# arbitrary uid.
ENV PYTHONDONTWRITEBYTECODE=1 \
    HOST=0.0.0.0 \
    PORT=8000 \
    MODEL_DIR=/models \
    MOVIELENS_CACHE_DIR=/cache \
    STATE_DIR=/state \
    KERAS_HOME=/tmp/keras \
    MPLCONFIGDIR=/tmp/matplotlib \
    TF_CPP_MIN_LOG_LEVEL=2

# An unprivileged user. The volume mount points belong to it, so that a fresh named volume
# mounted there (Docker copies the ownership) is writable by `python -m training`.
RUN groupadd --system --gid 10001 app \
    && useradd --system --no-log-init --uid 10001 --gid 10001 --create-home --home-dir /home/app \
        --shell /usr/sbin/nologin app \
    && mkdir -p /models /cache /state \
    && chown 10001:10001 /models /cache /state

COPY --from=deps /opt/venv /opt/venv
RUN --mount=type=bind,from=wheel,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-deps /wheels/*.whl

WORKDIR /home/app
USER 10001:10001
EXPOSE 8000

# Ready = the bundle is loaded and warm (GET /readyz answers 200; 503 before). Plain python, no
# curl/wget in the image; proxies are bypassed for the loopback request.
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as r; r.build_opener(r.ProxyHandler({})).open('http://127.0.0.1:%s/readyz' % os.environ.get('PORT', '8000'), timeout=4)"]

CMD ["python", "-m", "app"]
