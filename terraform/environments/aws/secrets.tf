# Secrets Manager holds every secret the tasks need; ECS injects them as environment variables at
# task start (the execution role may read these secrets and no others).
#
# Terraform generates the database password, the Redis token and the metrics token, and writes the
# two connection URLs. It never sees the JWT private key: create the key pair yourself and put the private key
# into the "<name>-<environment>/jwt-private-key" secret (terraform/README.md shows the commands).

locals {
  db_username = "agentidp"
}

resource "random_password" "db" {
  length  = 32
  special = false
}

resource "random_password" "redis_auth" {
  length  = 48
  special = false
}

resource "aws_secretsmanager_secret" "database_url" {
  name                    = "${local.prefix}/database-url"
  description             = "AgentIdP DATABASE_URL"
  recovery_window_in_days = 7
}

# verify-full: the server's certificate must chain to the RDS CA bundle the image ships and name
# the host connected to (the instance's DNS name, which RDS certificates carry). pg-connection-string
# reads sslrootcert as a file path when the URL is parsed.
resource "aws_secretsmanager_secret_version" "database_url" {
  secret_id     = aws_secretsmanager_secret.database_url.id
  secret_string = "postgresql://${local.db_username}:${random_password.db.result}@${module.rds.address}:${module.rds.port}/${module.rds.database_name}?sslmode=verify-full&sslrootcert=${var.database_ca_bundle_path}"
}

resource "aws_secretsmanager_secret" "redis_url" {
  name                    = "${local.prefix}/redis-url"
  description             = "AgentIdP REDIS_URL (TLS and AUTH)"
  recovery_window_in_days = 7
}

resource "aws_secretsmanager_secret_version" "redis_url" {
  secret_id     = aws_secretsmanager_secret.redis_url.id
  secret_string = "rediss://:${random_password.redis_auth.result}@${module.redis.primary_endpoint_address}:${module.redis.port}"
}

resource "aws_secretsmanager_secret" "jwt_private_key" {
  name                    = "${local.prefix}/jwt-private-key"
  description             = "AgentIdP JWT_PRIVATE_KEY (PEM). Value put by the operator, never by Terraform."
  recovery_window_in_days = 7
}

locals {
  jwt_private_key_value_from = (
    var.jwt_private_key_version_id == ""
    ? aws_secretsmanager_secret.jwt_private_key.arn
    : "${aws_secretsmanager_secret.jwt_private_key.arn}:::${var.jwt_private_key_version_id}"
  )
}

# METRICS_TOKEN: /metrics answers only to "Authorization: Bearer <token>". The load balancer refuses
# /metrics from the internet; the token keeps anything else inside the VPC from reading it too.
# Give its value to the scraper (README: Scraping /metrics from inside).
resource "random_password" "metrics_token" {
  length  = 48
  special = false
}

resource "aws_secretsmanager_secret" "metrics_token" {
  name                    = "${local.prefix}/metrics-token"
  description             = "AgentIdP METRICS_TOKEN (bearer token of GET /metrics)"
  recovery_window_in_days = 7
}

resource "aws_secretsmanager_secret_version" "metrics_token" {
  secret_id     = aws_secretsmanager_secret.metrics_token.id
  secret_string = random_password.metrics_token.result
}
