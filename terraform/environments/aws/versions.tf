terraform {
  required_version = ">= 1.5.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.40"
    }
    random = {
      source  = "hashicorp/random"
      version = "~> 3.6"
    }
  }

  # Remote state: keep the state (it holds the generated database password and Redis token) in an
  # encrypted, versioned S3 bucket with locking, never on a laptop. Create the bucket once, then
  # uncomment this block, fill it in and run `terraform init -migrate-state`:
  #
  # backend "s3" {
  #   bucket       = "my-org-terraform-state"
  #   key          = "agentidp/production/terraform.tfstate"
  #   region       = "us-east-1"
  #   encrypt      = true
  #   use_lockfile = true # Terraform >= 1.10; older versions: dynamodb_table = "terraform-locks"
  # }
}

provider "aws" {
  region = var.aws_region

  default_tags {
    tags = merge(var.tags, {
      Application = "agentidp"
      Environment = var.environment
      ManagedBy   = "terraform"
    })
  }
}
