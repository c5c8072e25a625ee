output "ip_address" {
  description = "Global anycast IP address: point the domain's A record at it."
  value       = google_compute_global_address.this.address
}

output "backend_service_id" {
  description = "Backend service id (for Cloud Armor or CDN settings)."
  value       = google_compute_backend_service.this.id
}

output "certificate_id" {
  description = "Google-managed certificate (provisions once DNS points at the IP)."
  value       = google_compute_managed_ssl_certificate.this.id
}
