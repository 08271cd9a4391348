# One image for every sqld service; docker-compose.yml picks the service by its command.
# Stage 1 generates the gRPC stubs (grpcio-tools is a build tool, not part of the image).
FROM python:3.11.11-slim-bookworm AS stubs
WORKDIR /app
COPY requirements.lock ./
COPY proto proto
RUN pip install --no-cache-dir -c requirements.lock grpcio-tools \
 && mkdir -p out/sqld/v1 out/sqld/testing/v1 \
 && python -m grpc_tools.protoc -Iproto --python_out=out --pyi_out=out \
      --grpc_python_out=out proto/sqld/v1/*.proto proto/sqld/testing/v1/*.proto \
 && touch out/sqld/v1/__init__.py out/sqld/testing/v1/__init__.py

FROM python:3.11.11-slim-bookworm
WORKDIR /app
COPY pyproject.toml requirements.lock ./
COPY services services
COPY --from=stubs /app/out/sqld/v1 services/sqld/v1
COPY --from=stubs /app/out/sqld/testing/v1 services/sqld/testing/v1
# the runtime set only, at the locked versions
RUN pip install --no-cache-dir -c requirements.lock .
# WITH_FDB=1 (the mvsqlite profile) adds FoundationDB's client library and Python binding.
ARG WITH_FDB=0
ARG FDB_VERSION=7.1.61
RUN if [ "$WITH_FDB" = "1" ]; then \
      python -c "import urllib.request as u; u.urlretrieve('https://github.com/apple/foundationdb/releases/download/${FDB_VERSION}/foundationdb-clients_${FDB_VERSION}-1_amd64.deb', '/tmp/fdb-clients.deb')" \
      && dpkg -i /tmp/fdb-clients.deb && rm /tmp/fdb-clients.deb \
      && pip install --no-cache-dir "foundationdb==${FDB_VERSION}"; \
    fi
ENV PYTHONPATH=/app/services PYTHONUNBUFFERED=1
# Every service runs as this unprivileged user (fixed uid, so volumes and Envoy agree). Named
# volumes mounted on /data and /pki start as copies of these folders, so they belong to it.
RUN groupadd --gid 10001 sqld && useradd --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin sqld \
 && mkdir -p /data /pki && chown sqld:sqld /data /pki && chmod 0700 /pki
USER 10001:10001
EXPOSE 5432 7000 7001 7003
