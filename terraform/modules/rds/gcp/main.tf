# Cloud SQL for PostgreSQL 14, REGIONAL (high availability), private IP only, TLS required,
# daily backups and point-in-time recovery.
#
# TLS with verify-full: the default per-instance CA (GOOGLE_MANAGED_INTERNAL_CA) signs certificates
# that name the instance only as "<project>:<instance>" in their subject, with no DNS name or IP a
# client could check the host against (Google's own connectors special-case that form). The shared
# CA (GOOGLE_MANAGED_CAS_CA) issues certificates carrying the instance's DNS name (dns_name), so a
# standard client such as node-postgres can verify chain and host name when it connects by that
# name. The environment resolves the name to the private IP in a private DNS zone.

resource "google_sql_database_instance" "this" {
  name                = var.name
  region              = var.region
  database_version    = "POSTGRES_14"
  deletion_protection = var.deletion_protection

  settings {
    tier              = var.tier
    edition           = "ENTERPRISE"
    availability_type = var.availability_type
    disk_type         = "PD_SSD"
    disk_size         = var.disk_size_gb
    disk_autoresize   = true
    user_labels       = var.labels

    ip_configuration {
      ipv4_enabled    = false
      private_network = var.network_id
      ssl_mode        = "ENCRYPTED_ONLY"
      server_ca_mode  = "GOOGLE_MANAGED_CAS_CA"
    }

    backup_configuration {
      enabled                        = true
      start_time                     = "03:00"
      point_in_time_recovery_enabled = true
      transaction_log_retention_days = 7

      backup_retention_settings {
        retained_backups = var.backup_retention_count
        retention_unit   = "COUNT"
      }
    }

    maintenance_window {
      day          = 7
      hour         = 4
      update_track = "stable"
    }

    insights_config {
      query_insights_enabled = true
    }

    database_flags {
      name  = "log_min_duration_statement"
      value = "500"
    }
  }
}

resource "google_sql_database" "this" {
  name     = var.database_name
  instance = google_sql_database_instance.this.name
}

resource "google_sql_user" "this" {
  name     = var.username
  instance = google_sql_database_instance.this.name
  password = var.password
}

# Every CA certificate the instance's server certificate may chain to (current and upcoming), for
# the client's sslrootcert.
data "google_sql_ca_certs" "this" {
  instance = google_sql_database_instance.this.name
}
