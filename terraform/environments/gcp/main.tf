# AgentIdP on GCP:
#   global external load balancer (anycast IP, managed TLS) -> Cloud Run (min/max instances)
#     -> Serverless VPC Access -> Cloud SQL PostgreSQL 14 (REGIONAL) + Memorystore Redis 7 (STANDARD_HA, TLS)
# Secrets live in Secret Manager and are mounted into the service.

locals {
  redis_ca_dir     = "/etc/agentidp/redis-ca"
  database_ca_dir  = "/etc/agentidp/database-ca"
  database_ca_file = "${local.database_ca_dir}/ca.pem"
}

module "rds" {
  source = "../../modules/rds/gcp"

  name                = local.prefix
  region              = var.gcp_region
  network_id          = google_compute_network.this.id
  tier                = var.db_tier
  availability_type   = "REGIONAL"
  disk_size_gb        = var.db_disk_size_gb
  database_name       = "agentidp"
  username            = local.db_username
  password            = random_password.db.result
  deletion_protection = var.deletion_protection

  depends_on = [google_service_networking_connection.private_services]
}

module "redis" {
  source = "../../modules/redis/gcp"

  name           = local.prefix
  region         = var.gcp_region
  network_id     = google_compute_network.this.id
  redis_version  = "REDIS_7_2"
  memory_size_gb = var.redis_memory_size_gb
  replica_count  = 1

  depends_on = [google_service_networking_connection.private_services]
}

module "agentidp" {
  source = "../../modules/agentidp/gcp"

  name                = local.prefix
  project_id          = var.project_id
  region              = var.gcp_region
  container_image     = var.container_image
  cpu                 = var.cpu
  memory              = var.memory
  min_instances       = var.min_instances
  max_instances       = var.max_instances
  vpc_connector_id    = google_vpc_access_connector.this.id
  deletion_protection = var.deletion_protection

  environment = merge(var.extra_environment, {
    ISSUER_URL                 = "https://${var.domain_name}"
    JWT_PUBLIC_KEY             = var.jwt_public_key
    JWT_ADDITIONAL_PUBLIC_KEYS = var.jwt_additional_public_keys
    TOKEN_TTL_SECONDS          = tostring(var.token_ttl_seconds)
    CORS_ORIGIN                = var.cors_origin
    LOG_LEVEL                  = var.log_level
    # Cloud Run's front end (link-local peer) and the load balancer (its own address, which it
    # writes after the client's into X-Forwarded-For): terraform/README.md, Client addresses.
    TRUST_PROXY = join(",", concat(var.cloud_run_proxy_cidrs, [module.lb.ip_address]))
    # Memorystore's certificate is signed by the instance's own CA
    NODE_EXTRA_CA_CERTS = "${local.redis_ca_dir}/ca.pem"
  })

  secret_env = {
    DATABASE_URL    = { secret = google_secret_manager_secret.database_url.secret_id, version = "latest" }
    REDIS_URL       = { secret = google_secret_manager_secret.redis_url.secret_id, version = "latest" }
    JWT_PRIVATE_KEY = { secret = google_secret_manager_secret.jwt_private_key.secret_id, version = var.jwt_private_key_version }
    METRICS_TOKEN   = { secret = google_secret_manager_secret.metrics_token.secret_id, version = "latest" }
  }

  secret_files = {
    redis-ca = {
      secret     = google_secret_manager_secret.redis_ca.secret_id
      version    = "latest"
      mount_path = local.redis_ca_dir
      file_name  = "ca.pem"
    }
    database-ca = {
      secret     = google_secret_manager_secret.database_ca.secret_id
      version    = "latest"
      mount_path = local.database_ca_dir
      file_name  = "ca.pem"
    }
  }

  depends_on = [
    google_secret_manager_secret_version.database_url,
    google_secret_manager_secret_version.redis_url,
    google_secret_manager_secret_version.redis_ca,
    google_secret_manager_secret_version.database_ca,
    google_secret_manager_secret_version.metrics_token,
    google_dns_record_set.database,
  ]
}

module "lb" {
  source = "../../modules/lb/gcp"

  name                   = local.prefix
  region                 = var.gcp_region
  cloud_run_service_name = module.agentidp.service_name
  domain_name            = var.domain_name
}

resource "google_dns_record_set" "app" {
  count        = var.dns_managed_zone == "" ? 0 : 1
  managed_zone = var.dns_managed_zone
  name         = "${var.domain_name}."
  type         = "A"
  ttl          = 300
  rrdatas      = [module.lb.ip_address]
}
