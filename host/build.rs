//! Which RocksDB the host links: the one the `rocksdb` crate bundles (built from C++ source,
//! 10–40 minutes once), or Debian's `librocksdb-dev` when `ROCKSDB_LIB_DIR` names it (what
//! `make` does: see the Makefile). The `wasp_system_rocksdb` cfg tells the code which.

fn main() {
    println!("cargo:rustc-check-cfg=cfg(wasp_system_rocksdb)");
    println!("cargo:rerun-if-env-changed=ROCKSDB_LIB_DIR");
    if std::env::var_os("ROCKSDB_LIB_DIR").is_some() {
        println!("cargo:rustc-cfg=wasp_system_rocksdb");
    }
}
