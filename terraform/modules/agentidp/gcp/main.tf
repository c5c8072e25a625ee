# AgentIdP on Cloud Run: its own service account (reads only its secrets), secrets injected as
# environment variables or mounted as files, egress to private ranges through the Serverless VPC
# Access connector, ingress only from the load balancer, and a Cloud Run job for migrations.

resource "google_service_account" "runtime" {
  project      = var.project_id
  account_id   = "${var.name}-run"
  display_name = "AgentIdP Cloud Run runtime"
}

locals {
  # one IAM binding per reference, keyed by names known at plan time
  secret_names = merge(
    { for name, entry in var.secret_env : "env-${name}" => entry.secret },
    { for name, entry in var.secret_files : "file-${name}" => entry.secret },
  )
}

resource "google_secret_manager_secret_iam_member" "runtime" {
  for_each  = local.secret_names
  project   = var.project_id
  secret_id = each.value
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.runtime.email}"
}

resource "google_cloud_run_v2_service" "this" {
  name                = var.name
  location            = var.region
  ingress             = "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER"
  deletion_protection = var.deletion_protection
  labels              = var.labels

  template {
    service_account                  = google_service_account.runtime.email
    max_instance_request_concurrency = var.concurrency
    timeout                          = "30s"

    scaling {
      min_instance_count = var.min_instances
      max_instance_count = var.max_instances
    }

    vpc_access {
      connector = var.vpc_connector_id
      egress    = "PRIVATE_RANGES_ONLY"
    }

    dynamic "volumes" {
      for_each = var.secret_files
      content {
        name = volumes.key
        secret {
          secret = volumes.value.secret
          items {
            version = volumes.value.version
            path    = volumes.value.file_name
          }
        }
      }
    }

    containers {
      image = var.container_image

      ports {
        container_port = var.container_port
      }

      resources {
        limits = {
          cpu    = var.cpu
          memory = var.memory
        }
        # CPU stays allocated between requests: the audit sealer, retention and revocation pruning
        # run on timers inside each instance (plugins/jobs.ts), and with CPU throttled outside
        # requests they would stall for as long as traffic pauses (README, "Background jobs")
        cpu_idle          = false
        startup_cpu_boost = true
      }

      dynamic "env" {
        for_each = var.environment
        content {
          name  = env.key
          value = env.value
        }
      }

      dynamic "env" {
        for_each = var.secret_env
        content {
          name = env.key
          value_source {
            secret_key_ref {
              secret  = env.value.secret
              version = env.value.version
            }
          }
        }
      }

      dynamic "volume_mounts" {
        for_each = var.secret_files
        content {
          name       = volume_mounts.key
          mount_path = volume_mounts.value.mount_path
        }
      }

      # Readiness gates traffic: an instance is put behind the load balancer only once /health/ready
      # answers 200 (PostgreSQL and Redis answer, schema at the latest migration). A revision whose
      # instances never get there (60 s here) is not rolled out; the previous one keeps serving.
      startup_probe {
        initial_delay_seconds = 0
        period_seconds        = 3
        timeout_seconds       = 2
        failure_threshold     = 20

        http_get {
          path = "/health/ready"
          port = var.container_port
        }
      }

      # Liveness restarts a wedged process. It never asks a dependency (/health/live), so a
      # PostgreSQL failover or a Redis outage does not restart instances that are fine.
      liveness_probe {
        initial_delay_seconds = 0
        period_seconds        = 10
        timeout_seconds       = 2
        failure_threshold     = 3

        http_get {
          path = "/health/live"
          port = var.container_port
        }
      }
    }
  }

  depends_on = [google_secret_manager_secret_iam_member.runtime]
}

# The load balancer is the only ingress; it needs the service to accept unauthenticated calls
# (AgentIdP authenticates its clients itself).
resource "google_cloud_run_v2_service_iam_member" "public" {
  project  = var.project_id
  location = google_cloud_run_v2_service.this.location
  name     = google_cloud_run_v2_service.this.name
  role     = "roles/run.invoker"
  member   = "allUsers"
}

# gcloud run jobs execute <name>-migrate --region <region> --wait   (before a deploy that brings migrations)
resource "google_cloud_run_v2_job" "migrate" {
  name                = "${var.name}-migrate"
  location            = var.region
  deletion_protection = var.deletion_protection
  labels              = var.labels

  template {
    task_count = 1

    template {
      service_account = google_service_account.runtime.email
      max_retries     = 1
      timeout         = "600s"

      vpc_access {
        connector = var.vpc_connector_id
        egress    = "PRIVATE_RANGES_ONLY"
      }

      # the same files as the service: DATABASE_URL names the database CA by its path
      dynamic "volumes" {
        for_each = var.secret_files
        content {
          name = volumes.key
          secret {
            secret = volumes.value.secret
            items {
              version = volumes.value.version
              path    = volumes.value.file_name
            }
          }
        }
      }

      containers {
        image = var.container_image
        # arguments of the image's entrypoint, so `gcloud run jobs execute --args=…` can run
        # another command (e.g. the bootstrap) with the same job
        args = var.migrate_command

        env {
          name = "DATABASE_URL"
          value_source {
            secret_key_ref {
              secret  = var.secret_env["DATABASE_URL"].secret
              version = var.secret_env["DATABASE_URL"].version
            }
          }
        }

        dynamic "volume_mounts" {
          for_each = var.secret_files
          content {
            name       = volume_mounts.key
            mount_path = volume_mounts.value.mount_path
          }
        }
      }
    }
  }

  depends_on = [google_secret_manager_secret_iam_member.runtime]
}
