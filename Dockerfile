# The GitHub Action's image (runs.using: docker in action.yml). GitHub runs container actions as
# root, so this image does too; the App (`serve`) runs in it as any user given a writable database.
# BASE_IMAGE: any Debian-like image with python3 (>= 3.11) and pip; the tests build it on a
# Debian base they make with debootstrap, since no registry can be reached there.
ARG BASE_IMAGE=python:3.11-slim
# EXTRAS: "[app]" for the GitHub App's image (uvloop, httptools, orjson); the Action needs none
ARG EXTRAS=""
FROM ${BASE_IMAGE} AS build
ARG EXTRAS
# Debian's own python3 marks itself externally managed; this image is ours to manage
ENV PIP_BREAK_SYSTEM_PACKAGES=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY . ./
# wheels for the package and every dependency, built where build tools may exist; a context that
# carries a wheelhouse/ (built beforehand, e.g. where the build cannot reach PyPI) is used as is
RUN if [ -d wheelhouse ]; then cp -r wheelhouse /wheels; \
    else python3 -m pip wheel --no-cache-dir --wheel-dir /wheels ".${EXTRAS}"; fi

FROM ${BASE_IMAGE}
ARG EXTRAS
ENV PIP_BREAK_SYSTEM_PACKAGES=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# git: the analysis reads the workspace's history with the git CLI
RUN command -v git >/dev/null || (apt-get update \
    && apt-get install -y --no-install-recommends git ca-certificates \
    && rm -rf /var/lib/apt/lists/*)
COPY --from=build /wheels /wheels
# kubernetes/aio is the client's asyncio twin (about 68 MB with bytecode); nothing here imports it
RUN python3 -m pip install --no-cache-dir --no-index --find-links /wheels "pipeline-bot${EXTRAS}" \
    && rm -rf /wheels \
    && rm -rf "$(python3 -c 'import kubernetes, os; print(os.path.dirname(kubernetes.__file__))')/aio"
ENTRYPOINT ["pipeline-bot"]
CMD ["--help"]
