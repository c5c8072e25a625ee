variable "name" {
  type        = string
  description = "Name of the ECS cluster, service, task families, IAM roles and log group."
}

variable "aws_region" {
  type        = string
  description = "Region of the CloudWatch log group (awslogs driver)."
}

variable "container_image" {
  type        = string
  description = "Image built from the repository's Dockerfile, by digest for reproducible deploys (…/agentidp@sha256:…)."
}

variable "container_port" {
  type        = number
  description = "Port the application listens on (PORT)."
  default     = 3000
}

variable "cpu" {
  type        = number
  description = "Fargate task CPU units (1024 = 1 vCPU)."
  default     = 1024
}

variable "memory" {
  type        = number
  description = "Fargate task memory in MiB."
  default     = 2048
}

variable "cpu_architecture" {
  type        = string
  description = "X86_64 or ARM64; must match the image's platform."
  default     = "X86_64"

  validation {
    condition     = contains(["X86_64", "ARM64"], var.cpu_architecture)
    error_message = "X86_64 or ARM64."
  }
}

variable "desired_count" {
  type        = number
  description = "Tasks at creation; autoscaling owns the count afterwards."
  default     = 2
}

variable "min_count" {
  type        = number
  description = "Fewest tasks autoscaling keeps (2 or more keeps one per availability zone)."
  default     = 2
}

variable "max_count" {
  type        = number
  description = "Most tasks autoscaling starts."
  default     = 10
}

variable "cpu_target_percent" {
  type        = number
  description = "Average service CPU utilisation autoscaling aims for."
  default     = 60
}

variable "subnet_ids" {
  type        = list(string)
  description = "Private subnets the tasks run in (no public IP)."
}

variable "security_group_ids" {
  type        = list(string)
  description = "Security groups of the tasks."
}

variable "target_group_arn" {
  type        = string
  description = "Load balancer target group the service registers its tasks in."
}

variable "environment" {
  type        = map(string)
  description = "Plain (non-secret) environment variables of the container, e.g. ISSUER_URL, JWT_PUBLIC_KEY."
  default     = {}
}

variable "secrets" {
  type        = map(string)
  description = "Environment variables injected from Secrets Manager at task start: name => valueFrom (secret ARN, optionally with :json-key:version-stage:version-id)."
}

variable "secret_arns" {
  type        = list(string)
  description = "ARNs of the secrets in var.secrets: the only ones the execution role may read."
}

variable "migrate_command" {
  type        = list(string)
  description = "Command of the one-off migration task (the same as compose.yaml's migrate service)."
  default = [
    "/app/node_modules/.bin/node-pg-migrate", "up",
    "--migrations-dir", "/app/migrations",
    "--migrations-table", "schema_migrations",
    "--advisory-lock-mode", "wait",
    "--no-verbose",
  ]
}

variable "log_retention_days" {
  type        = number
  description = "Days CloudWatch keeps the application logs."
  default     = 30
}

variable "tags" {
  type        = map(string)
  description = "Tags for every resource of this module."
  default     = {}
}
