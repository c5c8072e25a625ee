output "host" {
  description = "Private IP of the primary endpoint."
  value       = google_redis_instance.this.host
}

output "port" {
  description = "Port of the primary endpoint (6378 with in-transit encryption)."
  value       = google_redis_instance.this.port
}

output "auth_string" {
  description = "AUTH string of the instance."
  value       = google_redis_instance.this.auth_string
  sensitive   = true
}

output "server_ca_cert" {
  description = "PEM of the CA that signed the instance's TLS certificate."
  value       = google_redis_instance.this.server_ca_certs[0].cert
  sensitive   = true
}
