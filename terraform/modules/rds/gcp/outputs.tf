output "instance_name" {
  description = "Cloud SQL instance name (backups, clones and restores use it)."
  value       = google_sql_database_instance.this.name
}

output "connection_name" {
  description = "project:region:instance, for the Cloud SQL Auth Proxy."
  value       = google_sql_database_instance.this.connection_name
}

output "private_ip" {
  description = "Private IP address of the instance."
  value       = google_sql_database_instance.this.private_ip_address
}

output "database_name" {
  description = "Name of the application database."
  value       = google_sql_database.this.name
}

output "dns_name" {
  description = "DNS name the server certificate carries (no trailing dot): the host a verify-full client connects to. Resolve it to private_ip in a private DNS zone."
  value       = trimsuffix(google_sql_database_instance.this.dns_name, ".")
}

output "server_ca_certs" {
  description = "PEM bundle of the CAs the server certificate chains to (sslrootcert of a verify-full client)."
  value       = join("\n", [for cert in data.google_sql_ca_certs.this.certs : trimspace(cert.cert)])
}
