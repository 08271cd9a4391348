# One image for every sqld service; docker-compose.yml picks the service by its command.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml ./
COPY proto proto
COPY services services
RUN pip install --no-cache-dir grpcio-tools==1.85.1 \
 && python -m grpc_tools.protoc -Iproto --python_out=services --pyi_out=services \
      --grpc_python_out=services proto/sqld/v1/*.proto proto/sqld/testing/v1/*.proto \
 && touch services/sqld/v1/__init__.py services/sqld/testing/v1/__init__.py \
 && pip install --no-cache-dir .
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
