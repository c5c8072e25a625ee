output "issuer_url" {
  description = "ISSUER_URL of the deployment: the public base URL of the IdP."
  value       = "https://${var.domain_name}"
}

output "health_url" {
  description = "Health endpoint behind the load balancer."
  value       = "https://${var.domain_name}/health"
}

output "load_balancer_ip" {
  description = "Global anycast IP of the load balancer (the domain's A record)."
  value       = module.lb.ip_address
}

output "cloud_run_service" {
  description = "Cloud Run service name (gcloud run services update …)."
  value       = module.agentidp.service_name
}

output "cloud_run_uri" {
  description = "run.app URL (not reachable from outside: ingress is restricted to the load balancer)."
  value       = module.agentidp.service_uri
}

output "migrate_job" {
  description = "Cloud Run job applying migrations (gcloud run jobs execute … --wait)."
  value       = module.agentidp.migrate_job_name
}

output "cloud_sql_instance" {
  description = "Cloud SQL instance name (backups, point-in-time restore)."
  value       = module.rds.instance_name
}

output "cloud_sql_connection_name" {
  description = "project:region:instance, for the Cloud SQL Auth Proxy."
  value       = module.rds.connection_name
}

output "redis_host" {
  description = "Private IP of the Memorystore primary endpoint."
  value       = module.redis.host
}

output "jwt_private_key_secret" {
  description = "Secret to add the JWT private key to (gcloud secrets versions add …)."
  value       = google_secret_manager_secret.jwt_private_key.secret_id
}
