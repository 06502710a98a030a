//! The README's example of a host calling the core ABI module, compiled and run as written.

use wasmtime::{Engine, Instance, Module, Store};

// --- README example starts here ---
/// Builds the destination request for one collected conversion with the core ABI module.
fn build_request(
    wasm: &[u8],
    config: &[u8],
    input: &[u8],
    secrets: &[u8],
    now_ms: i64,
) -> wasmtime::Result<String> {
    let engine = Engine::default();
    let module = Module::new(&engine, wasm)?;
    let mut store = Store::new(&engine, ());
    let instance = Instance::new(&mut store, &module, &[])?; // the module imports nothing
    let memory = instance
        .get_memory(&mut store, "memory")
        .ok_or_else(|| wasmtime::format_err!("no memory export"))?;
    let version = instance.get_typed_func::<(), u32>(&mut store, "capi_abi_version")?;
    wasmtime::ensure!(
        version.call(&mut store, ())? == 1,
        "unsupported capi ABI version"
    );
    let alloc = instance.get_typed_func::<u32, u32>(&mut store, "capi_alloc")?;
    let free = instance.get_typed_func::<(u32, u32), ()>(&mut store, "capi_free")?;
    let build = instance.get_typed_func::<(u32, u32, u32, u32, u32, u32, i64), u64>(
        &mut store,
        "capi_build_request",
    )?;

    // Copy each input into a block the module allocates.
    let put = |store: &mut Store<()>, bytes: &[u8]| -> wasmtime::Result<(u32, u32)> {
        let ptr = alloc.call(&mut *store, bytes.len() as u32)?;
        memory.write(&mut *store, ptr as usize, bytes)?;
        Ok((ptr, bytes.len() as u32))
    };
    let (c, i, s) = (
        put(&mut store, config)?,
        put(&mut store, input)?,
        put(&mut store, secrets)?,
    );
    let handle = build.call(&mut store, (c.0, c.1, i.0, i.1, s.0, s.1, now_ms))?;
    for (ptr, len) in [c, i, s] {
        free.call(&mut store, (ptr, len))?;
    }

    // The result: (ptr << 32) | len of a JSON document the host frees.
    let (ptr, len) = ((handle >> 32) as u32, handle as u32);
    let mut out = vec![0u8; len as usize];
    memory.read(&store, ptr as usize, &mut out)?;
    free.call(&mut store, (ptr, len))?;
    Ok(String::from_utf8(out)?)
}
// --- README example ends here ---

#[test]
fn the_readme_host_works() {
    let wasm = std::fs::read(capi_wasmtime_tests::artifacts::core_abi_wasm_path()).unwrap();
    let config = capi_core::config::EXAMPLE_CONFIG.as_bytes();
    let input = br#"{"conversion_type":"Purchase","order_id":"A-1","value":"12.50","currency":"eur","email":"a@b.co"}"#;
    let out = build_request(
        &wasm,
        config,
        input,
        br#"{"CAPI_TOKEN":"t0k"}"#,
        1_795_686_120_000,
    )
    .unwrap();
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        v["ok"]["request"]["url"],
        "https://127.0.0.1:9443/v1/conversions"
    );
    assert_eq!(
        v["ok"]["request"]["headers"][1],
        serde_json::json!(["authorization", "Bearer t0k"])
    );
    eprintln!("{out}");
    let err = build_request(
        &wasm,
        config,
        br#"{"order_id":"A-1"}"#,
        br#"{"CAPI_TOKEN":"t0k"}"#,
        0,
    )
    .unwrap();
    assert!(err.contains(r#""kind":"input""#), "{err}");
}
