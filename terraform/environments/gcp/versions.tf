terraform {
  required_version = ">= 1.5.0"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "~> 6.0"
    }
    random = {
      source  = "hashicorp/random"
      version = "~> 3.6"
    }
  }

  # Remote state: keep the state (it holds the generated database password and the Redis AUTH
  # string) in a versioned GCS bucket with uniform access, never on a laptop. Create the bucket
  # once (gcloud storage buckets create gs://my-org-terraform-state --uniform-bucket-level-access
  # and enable versioning), then uncomment this block and run `terraform init -migrate-state`:
  #
  # backend "gcs" {
  #   bucket = "my-org-terraform-state"
  #   prefix = "agentidp/production"
  # }
}

provider "google" {
  project = var.project_id
  region  = var.gcp_region

  default_labels = merge(var.labels, {
    application = "agentidp"
    environment = var.environment
    managed-by  = "terraform"
  })
}
