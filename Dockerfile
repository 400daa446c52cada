# The GitHub Action's image (runs.using: docker in action.yml). GitHub runs container actions as
# root, so this image does too; the App (`serve`) runs in it as any user given a writable database.
# BASE_IMAGE: any Debian-like image with python3 (>= 3.11) and pip; the tests build it on a
# Debian base they make with debootstrap, since no registry can be reached there.
ARG BASE_IMAGE=python:3.11-slim
# EXTRAS: "[app]" for the GitHub App's image (its web server, SQL store, JWT signing and fast
# paths); the Action's image leaves them out
ARG EXTRAS=""
FROM ${BASE_IMAGE} AS build
ARG EXTRAS
ENV PIP_BREAK_SYSTEM_PACKAGES=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN command -v git >/dev/null || (apt-get update \
    && apt-get install -y --no-install-recommends git && rm -rf /var/lib/apt/lists/*)
WORKDIR /src
COPY . ./
# One virtualenv without pip, filled by the base's pip, built where build tools may exist. A
# context that carries a wheelhouse/ (built beforehand, e.g. where the build cannot reach PyPI)
# is installed from as is. What the image leaves out, by measurement (README: "The Action's
# image"): bytecode (--no-compile; precompile_image.py then compiles only what the Action
# imports), the Kubernetes client's asyncio twin and the aiohttp stack only it uses, numpy's tests.
RUN python3 -m venv --without-pip /opt/pipeline-bot \
    && if [ -d wheelhouse ]; then set -- --no-index --find-links wheelhouse "pipeline-bot${EXTRAS}"; \
       else set -- ".${EXTRAS}"; fi \
    && python3 -m pip --python /opt/pipeline-bot/bin/python install --no-cache-dir --no-compile "$@" \
    && site="$(/opt/pipeline-bot/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" \
    && rm -rf "$site/kubernetes/aio" \
    && python3 -m pip --python /opt/pipeline-bot/bin/python uninstall -y -q aiohttp aiohttp-retry \
       aiohappyeyeballs aiosignal frozenlist multidict propcache yarl \
    && find "$site/numpy" -type d -name tests -prune -exec rm -rf {} + \
    && /opt/pipeline-bot/bin/python scripts/precompile_image.py

FROM ${BASE_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PATH=/opt/pipeline-bot/bin:$PATH
# git: the analysis reads the workspace's history with the git CLI
RUN command -v git >/dev/null || (apt-get update \
    && apt-get install -y --no-install-recommends git ca-certificates \
    && rm -rf /var/lib/apt/lists/*)
COPY --from=build /opt/pipeline-bot /opt/pipeline-bot
ENTRYPOINT ["pipeline-bot"]
CMD ["--help"]
