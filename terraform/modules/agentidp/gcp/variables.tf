variable "name" {
  type        = string
  description = "Name of the Cloud Run service and prefix of the migration job and service account (at most 24 characters)."

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,23}$", var.name))
    error_message = "Lower-case letters, digits and hyphens, starting with a letter, at most 24 characters."
  }
}

variable "project_id" {
  type        = string
  description = "Project the service account and the secrets belong to."
}

variable "region" {
  type        = string
  description = "Region of the Cloud Run service and job."
}

variable "container_image" {
  type        = string
  description = "Image built from the repository's Dockerfile, by digest for reproducible deploys (…/agentidp@sha256:…)."
}

variable "container_port" {
  type        = number
  description = "Port the container listens on; Cloud Run passes it as PORT, which AgentIdP honours."
  default     = 3000
}

variable "cpu" {
  type        = string
  description = "CPU limit of an instance."
  default     = "1"
}

variable "memory" {
  type        = string
  description = "Memory limit of an instance."
  default     = "1Gi"
}

variable "min_instances" {
  type        = number
  description = "Instances kept warm (0 lets the service scale to zero; the first token then waits for a cold start)."
  default     = 1
}

variable "max_instances" {
  type        = number
  description = "Most instances Cloud Run starts (bounded by what PostgreSQL's connection limit allows)."
  default     = 10
}

variable "concurrency" {
  type        = number
  description = "Requests one instance serves at once."
  default     = 80
}

variable "vpc_connector_id" {
  type        = string
  description = "Serverless VPC Access connector through which instances reach Cloud SQL and Memorystore."
}

variable "environment" {
  type        = map(string)
  description = "Plain (non-secret) environment variables, e.g. ISSUER_URL, JWT_PUBLIC_KEY. PORT is set by Cloud Run."
  default     = {}
}

variable "secret_env" {
  type = map(object({
    secret  = string
    version = string
  }))
  description = "Environment variables read from Secret Manager when an instance starts: name => {secret id, version}."

  validation {
    condition     = contains(keys(var.secret_env), "DATABASE_URL")
    error_message = "DATABASE_URL must come from Secret Manager (the migration job reads it too)."
  }
}

variable "secret_files" {
  type = map(object({
    secret     = string
    version    = string
    mount_path = string
    file_name  = string
  }))
  description = "Secrets mounted as files: volume name => {secret id, version, directory, file name}."
  default     = {}
}

variable "migrate_command" {
  type        = list(string)
  description = "Command of the migration job (the same as compose.yaml's migrate service)."
  default = [
    "/app/node_modules/.bin/node-pg-migrate", "up",
    "--migrations-dir", "/app/migrations",
    "--migrations-table", "schema_migrations",
    "--advisory-lock-mode", "wait",
    "--no-verbose",
  ]
}

variable "deletion_protection" {
  type        = bool
  description = "Refuse to delete the service and job through Terraform."
  default     = true
}

variable "labels" {
  type        = map(string)
  description = "Labels of the service and job."
  default     = {}
}
