# Secret Manager holds every secret the service needs; Cloud Run reads them when an instance
# starts (as environment variables, and the Redis CA as a mounted file). The runtime service
# account may access these secrets and no others.
#
# Terraform generates the database password and writes the connection URLs. It never sees the JWT
# private key: create the key pair yourself and add the private key as a version of the
# "<name>-<environment>-jwt-private-key" secret (terraform/README.md shows the commands).

locals {
  db_username = "agentidp"
}

resource "random_password" "db" {
  length  = 32
  special = false
}

resource "google_secret_manager_secret" "database_url" {
  secret_id = "${local.prefix}-database-url"

  replication {
    auto {}
  }

  depends_on = [google_project_service.this]
}

resource "google_secret_manager_secret_version" "database_url" {
  secret      = google_secret_manager_secret.database_url.id
  secret_data = "postgresql://${local.db_username}:${random_password.db.result}@${module.rds.private_ip}:5432/${module.rds.database_name}?sslmode=no-verify"
}

resource "google_secret_manager_secret" "redis_url" {
  secret_id = "${local.prefix}-redis-url"

  replication {
    auto {}
  }

  depends_on = [google_project_service.this]
}

resource "google_secret_manager_secret_version" "redis_url" {
  secret      = google_secret_manager_secret.redis_url.id
  secret_data = "rediss://:${module.redis.auth_string}@${module.redis.host}:${module.redis.port}"
}

resource "google_secret_manager_secret" "redis_ca" {
  secret_id = "${local.prefix}-redis-ca"

  replication {
    auto {}
  }

  depends_on = [google_project_service.this]
}

resource "google_secret_manager_secret_version" "redis_ca" {
  secret      = google_secret_manager_secret.redis_ca.id
  secret_data = module.redis.server_ca_cert
}

resource "google_secret_manager_secret" "jwt_private_key" {
  secret_id = "${local.prefix}-jwt-private-key"

  replication {
    auto {}
  }

  depends_on = [google_project_service.this]
}
