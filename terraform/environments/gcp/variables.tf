variable "project_id" {
  type        = string
  description = "GCP project to deploy to."
}

variable "gcp_region" {
  type        = string
  description = "Region of Cloud Run, Cloud SQL, Memorystore and the VPC connector, e.g. us-central1."
}

variable "environment" {
  type        = string
  description = "Environment name, used in resource names and labels (at most 11 characters)."
  default     = "production"

  validation {
    condition     = can(regex("^[a-z][a-z0-9]{0,10}$", var.environment))
    error_message = "Lower-case letters and digits, at most 11 characters."
  }
}

variable "name" {
  type        = string
  description = "Base name; resources are named <name>-<environment> (name: at most 9 characters, so that every GCP name fits)."
  default     = "agentidp"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,8}$", var.name))
    error_message = "Lower-case letters, digits and hyphens, starting with a letter, at most 9 characters."
  }
}

variable "labels" {
  type        = map(string)
  description = "Extra labels for every resource."
  default     = {}
}

# --- network ---------------------------------------------------------------------------------

variable "subnet_cidr" {
  type        = string
  description = "CIDR of the regional subnet."
  default     = "10.50.0.0/20"
}

variable "connector_cidr" {
  type        = string
  description = "Unused /28 for the Serverless VPC Access connector."
  default     = "10.50.16.0/28"
}

variable "connector_min_instances" {
  type        = number
  description = "Fewest connector instances (2-9)."
  default     = 2
}

variable "connector_max_instances" {
  type        = number
  description = "Most connector instances (3-10)."
  default     = 4
}

# --- DNS -------------------------------------------------------------------------------------

variable "domain_name" {
  type        = string
  description = "Host name of the IdP, e.g. idp.example.com: ISSUER_URL becomes https://<domain_name>."
}

variable "dns_managed_zone" {
  type        = string
  description = "Cloud DNS managed zone to write the A record into; empty to manage DNS elsewhere (point it at the load_balancer_ip output)."
  default     = ""
}

# --- application -----------------------------------------------------------------------------

variable "container_image" {
  type        = string
  description = "AgentIdP image (from the repository's Dockerfile) in Artifact Registry, preferably by digest: <region>-docker.pkg.dev/<project>/<repo>/agentidp@sha256:…"
}

variable "min_instances" {
  type        = number
  description = "Cloud Run instances kept warm."
  default     = 1
}

variable "max_instances" {
  type        = number
  description = "Most Cloud Run instances (each opens up to 20 PostgreSQL connections: keep max × 20 below the database's max_connections)."
  default     = 10
}

variable "cpu" {
  type        = string
  description = "CPU limit per Cloud Run instance."
  default     = "1"
}

variable "memory" {
  type        = string
  description = "Memory limit per Cloud Run instance."
  default     = "1Gi"
}

variable "jwt_public_key" {
  type        = string
  description = "PEM public key matching the private key in the <name>-<environment>-jwt-private-key secret (public: not a secret). Literal \\n accepted."
}

variable "jwt_additional_public_keys" {
  type        = string
  description = "Previous or next public keys still verifying tokens (ops/runbooks/jwt-key-rotation.md); empty for none."
  default     = ""
}

variable "jwt_private_key_version" {
  type        = string
  description = "Version of the jwt-private-key secret instances read (\"latest\" or a number). Pin it during a key rotation so that key and public key change in the same revision."
  default     = "latest"
}

variable "token_ttl_seconds" {
  type        = number
  description = "Access token lifetime (TOKEN_TTL_SECONDS, 60-86400)."
  default     = 3600
}

variable "cors_origin" {
  type        = string
  description = "Allowed CORS origin(s), comma-separated (CORS_ORIGIN); * for any."
  default     = "*"
}

variable "log_level" {
  type        = string
  description = "pino log level (LOG_LEVEL)."
  default     = "info"
}

variable "cloud_run_proxy_cidrs" {
  type        = list(string)
  description = "Addresses Cloud Run's front end connects to the container from (link-local, which no client on the internet can use). TRUST_PROXY is these plus the load balancer's own address."
  default     = ["169.254.0.0/16"]
}

variable "extra_environment" {
  type        = map(string)
  description = "Further non-secret variables for the container (e.g. RATE_LIMIT_TOKEN_PER_CLIENT, DOCS_ENABLED). Secrets belong in Secret Manager: names of secrets are refused here."
  default     = {}

  validation {
    # a plain environment variable shows in the service's revision to anyone who may view it
    condition = alltrue([
      for name in keys(var.extra_environment) :
      !can(regex("(?i)(SECRET|PASSWORD|PASSWD|PRIVATE_KEY|_TOKEN)$|^(TOKEN|DATABASE_URL|REDIS_URL)$", name))
    ])
    error_message = "A secret (…_SECRET, …_PASSWORD, …_PRIVATE_KEY, …_TOKEN, DATABASE_URL, REDIS_URL) is not a plain environment variable: put it into Secret Manager and the module's secret_env."
  }
}

# --- data stores -----------------------------------------------------------------------------

variable "db_tier" {
  type        = string
  description = "Cloud SQL machine tier."
  default     = "db-custom-2-7680"
}

variable "db_disk_size_gb" {
  type        = number
  description = "Initial Cloud SQL disk size in GB."
  default     = 50
}

variable "redis_memory_size_gb" {
  type        = number
  description = "Memorystore memory in GB."
  default     = 1
}

variable "deletion_protection" {
  type        = bool
  description = "Protect Cloud SQL and the Cloud Run service and job from deletion."
  default     = true
}
