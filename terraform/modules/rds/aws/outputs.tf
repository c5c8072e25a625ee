output "address" {
  description = "Host name of the instance (follows a Multi-AZ failover)."
  value       = aws_db_instance.this.address
}

output "port" {
  description = "PostgreSQL port."
  value       = aws_db_instance.this.port
}

output "endpoint" {
  description = "host:port of the instance."
  value       = aws_db_instance.this.endpoint
}

output "instance_id" {
  description = "DB instance identifier (for snapshots and point-in-time restores)."
  value       = aws_db_instance.this.identifier
}

output "arn" {
  description = "ARN of the DB instance."
  value       = aws_db_instance.this.arn
}

output "database_name" {
  description = "Name of the application database."
  value       = aws_db_instance.this.db_name
}
