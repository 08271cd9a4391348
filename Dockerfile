# One image for every sqld service; docker-compose.yml picks the service by its command.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml ./
COPY proto proto
COPY services services
RUN pip install --no-cache-dir grpcio-tools==1.85.1 \
 && python -m grpc_tools.protoc -Iproto --python_out=services --pyi_out=services \
      --grpc_python_out=services proto/sqld/v1/*.proto \
 && touch services/sqld/__init__.py services/sqld/v1/__init__.py \
 && pip install --no-cache-dir .
ENV PYTHONPATH=/app/services PYTHONUNBUFFERED=1
USER nobody
EXPOSE 5432 7000 7001 7003
