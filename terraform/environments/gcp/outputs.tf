output "issuer_url" {
  description = "ISSUER_URL of the deployment: the public base URL of the IdP."
  value       = "https://${var.domain_name}"
}

output "health_url" {
  description = "Health endpoint behind the load balancer (the runbooks' GET /health; probes use /health/live and /health/ready)."
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

output "cloud_sql_dns_name" {
  description = "Host name in DATABASE_URL: the name the Cloud SQL certificate carries, resolved to the private IP inside the VPC."
  value       = module.rds.dns_name
}

output "metrics_token_secret" {
  description = "Secret holding METRICS_TOKEN, the bearer token a scraper sends to GET /metrics."
  value       = google_secret_manager_secret.metrics_token.secret_id
}
