# Secret Manager holds every secret the service needs; Cloud Run reads them when an instance
# starts (as environment variables, and the Redis and Cloud SQL CAs as mounted files). The runtime
# service account may access these secrets and no others.
#
# Terraform generates the database password and the metrics token and writes the connection URLs. It never sees the JWT
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

# verify-full against the instance's DNS name (in its certificate, resolved by the private zone in
# database.tf) and the instance's CAs, mounted from the database-ca secret at local.database_ca_file.
resource "google_secret_manager_secret_version" "database_url" {
  secret      = google_secret_manager_secret.database_url.id
  secret_data = "postgresql://${local.db_username}:${random_password.db.result}@${module.rds.dns_name}:5432/${module.rds.database_name}?sslmode=verify-full&sslrootcert=${local.database_ca_file}"
}

# not a secret, but mounted the same way as the Redis CA: Cloud Run mounts files only from Secret Manager
resource "google_secret_manager_secret" "database_ca" {
  secret_id = "${local.prefix}-database-ca"

  replication {
    auto {}
  }

  depends_on = [google_project_service.this]
}

resource "google_secret_manager_secret_version" "database_ca" {
  secret      = google_secret_manager_secret.database_ca.id
  secret_data = module.rds.server_ca_certs
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

# METRICS_TOKEN: /metrics answers only to "Authorization: Bearer <token>". The load balancer refuses
# /metrics from the internet; the token keeps anything else that reaches the service from reading
# it. Give its value to the scraper (README: Scraping /metrics from inside).
resource "random_password" "metrics_token" {
  length  = 48
  special = false
}

resource "google_secret_manager_secret" "metrics_token" {
  secret_id = "${local.prefix}-metrics-token"

  replication {
    auto {}
  }

  depends_on = [google_project_service.this]
}

resource "google_secret_manager_secret_version" "metrics_token" {
  secret      = google_secret_manager_secret.metrics_token.id
  secret_data = random_password.metrics_token.result
}
