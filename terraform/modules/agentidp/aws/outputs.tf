output "cluster_name" {
  description = "ECS cluster name."
  value       = aws_ecs_cluster.this.name
}

output "service_name" {
  description = "ECS service name."
  value       = aws_ecs_service.app.name
}

output "task_definition_arn" {
  description = "Current task definition revision of the service."
  value       = aws_ecs_task_definition.app.arn
}

output "migrate_task_definition_family" {
  description = "Task definition family of the one-off migration task (aws ecs run-task --task-definition …)."
  value       = aws_ecs_task_definition.migrate.family
}

output "log_group_name" {
  description = "CloudWatch log group of the application and migration tasks."
  value       = aws_cloudwatch_log_group.this.name
}

output "execution_role_arn" {
  description = "IAM role ECS uses to pull the image, write logs and read the secrets."
  value       = aws_iam_role.execution.arn
}

output "task_role_arn" {
  description = "IAM role of the application itself (no permissions)."
  value       = aws_iam_role.task.arn
}
