//! Countries of source addresses, from a MaxMind-format database the operator
//! configures (`[watch] geoip_db`, e.g. GeoLite2-Country.mmdb): read once at
//! start, looked up only for a key's first request from a new network.

use std::net::IpAddr;
use std::path::Path;

/// An opened country database.
pub struct GeoIp(maxminddb::Reader<Vec<u8>>);

impl GeoIp {
    /// Opens the database at `path`, or says why it cannot be used.
    pub fn open(path: &Path) -> Result<GeoIp, String> {
        maxminddb::Reader::open_readfile(path)
            .map(GeoIp)
            .map_err(|e| {
                format!(
                    "[watch] geoip_db = {}: not a readable MaxMind DB file ({e}); point it at a GeoLite2-Country or GeoIP2-Country .mmdb file, or leave it out",
                    path.display()
                )
            })
    }

    /// The ISO 3166 code of the country `ip` is in, when the database knows it.
    pub fn country(&self, ip: IpAddr) -> Option<String> {
        let found = self.0.lookup(ip).ok()?;
        let code: Option<&str> = found
            .decode_path(&maxminddb::path!["country", "iso_code"])
            .ok()
            .flatten();
        code.map(str::to_string)
    }
}
