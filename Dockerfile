# The GitHub Action's image (runs.using: docker in action.yml). GitHub runs container actions as
# root, so this image does too; the App's deployment runs it with a non-root user instead.
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE} AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
# wheels for the package and every dependency, built where build tools may exist
RUN python -m pip wheel --no-cache-dir --wheel-dir /wheels .

FROM ${BASE_IMAGE}
# git: the analysis reads the workspace's history with the git CLI
RUN apt-get update \
    && apt-get install -y --no-install-recommends git ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /wheels /wheels
RUN python -m pip install --no-cache-dir --no-index --find-links /wheels pipeline-bot \
    && rm -rf /wheels
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
ENTRYPOINT ["pipeline-bot"]
CMD ["--help"]
