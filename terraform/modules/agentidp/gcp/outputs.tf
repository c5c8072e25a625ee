output "service_name" {
  description = "Cloud Run service name."
  value       = google_cloud_run_v2_service.this.name
}

output "service_uri" {
  description = "run.app URL of the service (ingress is restricted to the load balancer)."
  value       = google_cloud_run_v2_service.this.uri
}

output "migrate_job_name" {
  description = "Cloud Run job that applies migrations (gcloud run jobs execute …)."
  value       = google_cloud_run_v2_job.migrate.name
}

output "service_account_email" {
  description = "Service account the service and job run as."
  value       = google_service_account.runtime.email
}
