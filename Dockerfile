# ghl-migrate as a small container image: the tool and its pinned dependencies on a pinned
# Python, no compiler, not run as root. Build from the repository's root:
#   docker build -t ghl-migrate:0.1.0 .
# The base is pinned to an exact release; pin it by digest too in your registry
# (FROM python:3.11.11-slim-bookworm@sha256:...), see README "Sharded runs".

FROM python:3.11.11-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md image-constraints.txt ./
COPY engine/ engine/
COPY jobs/ jobs/
# A virtual environment, copied whole into the final image: no build tools come along.
RUN python -m venv /opt/ghl-migrate \
    && /opt/ghl-migrate/bin/pip install --no-cache-dir --constraint image-constraints.txt .

FROM python:3.11.11-slim-bookworm
LABEL org.opencontainers.image.title="ghl-migrate" \
      org.opencontainers.image.description="Batch migrations for HighLevel agencies" \
      org.opencontainers.image.licenses="MIT"
ENV PATH=/opt/ghl-migrate/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
COPY --from=build /opt/ghl-migrate /opt/ghl-migrate
# A numeric user, so that Kubernetes' runAsNonRoot can verify it without a passwd lookup.
RUN useradd --system --uid 10001 --user-group --no-create-home ghl-migrate
USER 10001:10001
WORKDIR /reports
ENTRYPOINT ["ghl-migrate"]
CMD ["--help"]
