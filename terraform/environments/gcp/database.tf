# The database's DNS name, resolvable inside the VPC. The Cloud SQL certificate (shared CA, see
# modules/rds/gcp) names the instance by this DNS name, not by its IP address, and a client verifies
# the name it connected to: DATABASE_URL therefore uses the name, and this private zone, visible
# only to the VPC, points it at the private IP. The zone holds that one name and nothing else, so no
# other *.sql.goog name in the network is shadowed.

resource "google_dns_managed_zone" "database" {
  name        = "${local.prefix}-sql"
  dns_name    = "${module.rds.dns_name}."
  description = "AgentIdP Cloud SQL instance name -> private IP (verify-full)"
  visibility  = "private"

  private_visibility_config {
    networks {
      network_url = google_compute_network.this.id
    }
  }

  depends_on = [google_project_service.this]
}

resource "google_dns_record_set" "database" {
  managed_zone = google_dns_managed_zone.database.name
  name         = google_dns_managed_zone.database.dns_name
  type         = "A"
  ttl          = 300
  rrdatas      = [module.rds.private_ip]
}
