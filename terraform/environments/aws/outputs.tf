output "issuer_url" {
  description = "ISSUER_URL of the deployment: the public base URL of the IdP."
  value       = "https://${var.domain_name}"
}

output "health_url" {
  description = "Health endpoint behind the load balancer (the runbooks' GET /health; probes use /health/live and /health/ready)."
  value       = "https://${var.domain_name}/health"
}

output "load_balancer_dns_name" {
  description = "DNS name of the ALB (the Route 53 record aliases it)."
  value       = module.lb.dns_name
}

output "ecs_cluster_name" {
  description = "ECS cluster of the service and of the migration task."
  value       = module.agentidp.cluster_name
}

output "ecs_service_name" {
  description = "ECS service name (aws ecs update-service --force-new-deployment …)."
  value       = module.agentidp.service_name
}

output "migrate_task_definition" {
  description = "Task definition family of the one-off migration task."
  value       = module.agentidp.migrate_task_definition_family
}

output "private_subnet_ids" {
  description = "Subnets for one-off tasks (aws ecs run-task --network-configuration …)."
  value       = aws_subnet.private[*].id
}

output "app_security_group_id" {
  description = "Security group for one-off tasks that need the database."
  value       = aws_security_group.app.id
}

output "log_group_name" {
  description = "CloudWatch log group of the tasks."
  value       = module.agentidp.log_group_name
}

output "rds_endpoint" {
  description = "host:port of the PostgreSQL instance (private)."
  value       = module.rds.endpoint
}

output "rds_instance_id" {
  description = "RDS instance identifier (snapshots, point-in-time restore)."
  value       = module.rds.instance_id
}

output "redis_primary_endpoint" {
  description = "Primary endpoint of the Redis replication group (private, TLS)."
  value       = module.redis.primary_endpoint_address
}

output "jwt_private_key_secret_arn" {
  description = "Secret to put the JWT private key into (aws secretsmanager put-secret-value …)."
  value       = aws_secretsmanager_secret.jwt_private_key.arn
}

output "metrics_token_secret_arn" {
  description = "Secret holding METRICS_TOKEN, the bearer token a scraper inside the VPC sends to GET /metrics."
  value       = aws_secretsmanager_secret.metrics_token.arn
}
