//! Compiles the three service protos with protox (no system `protoc`), generates the
//! tonic/prost bindings, and writes the encoded descriptor set that server reflection
//! serves (with source comments, so `grpcurl describe` shows the documentation).

use prost::Message;
use std::{env, fs, path::PathBuf};

const PROTOS: [&str; 3] =
    ["proto/booking/v1/booking.proto", "proto/assign/v1/assign.proto", "proto/notify/v1/notify.proto"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let fds = protox::compile(PROTOS, ["proto"])?;
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(out_dir.join("descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .emit_rerun_if_changed(false)
        .compile_fds(fds)?;
    Ok(())
}
