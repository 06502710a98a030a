//! The host itself refuses what Envoy refuses, checked with a tiny hand-made proxy-wasm module
//! (the filter never sends such calls): `proxy_http_call` without `:authority` (or `:path`,
//! `:method`) or to an unknown cluster is BadArgument (Envoy `context.cc` `Context::httpCall`).

use capi_wasmtime_tests::abi::{self, status};
use capi_wasmtime_tests::{Envoy, EnvoyOptions, FilterModule};
use wasm_encoder::{
    CodeSection, ConstExpr, DataSection, EntityType, ExportKind, ExportSection, Function,
    FunctionSection, ImportSection, Instruction, MemorySection, MemoryType, Module, TypeSection,
    ValType,
};

/// A module whose `proxy_on_tick` dispatches one call to `cluster` with `headers`.
fn dispatcher(cluster: &str, headers: &[(&str, &str)]) -> Vec<u8> {
    let hdrs = abi::serialize_pairs(&abi::to_pairs(headers));
    let trailers = abi::serialize_pairs(&[]);
    let mut m = Module::new();
    let mut types = TypeSection::new();
    types
        .ty()
        .function(vec![ValType::I32; 10], vec![ValType::I32]); // 0: proxy_http_call
    types
        .ty()
        .function(vec![ValType::I32, ValType::I32], vec![]); // 1: on_context_create
    types.ty().function(vec![ValType::I32], vec![]); // 2: on_tick
    types.ty().function(vec![], vec![]); // 3: abi version
    types.ty().function(vec![ValType::I32], vec![ValType::I32]); // 4: allocate
    m.section(&types);
    let mut imports = ImportSection::new();
    imports.import("env", "proxy_http_call", EntityType::Function(0));
    m.section(&imports);
    let mut funcs = FunctionSection::new();
    for t in [3, 1, 2, 4] {
        funcs.function(t);
    }
    m.section(&funcs);
    let mut mem = MemorySection::new();
    mem.memory(MemoryType {
        minimum: 1,
        maximum: None,
        memory64: false,
        shared: false,
        page_size_log2: None,
    });
    m.section(&mem);
    let mut exports = ExportSection::new();
    exports.export("proxy_abi_version_0_2_1", ExportKind::Func, 1);
    exports.export("proxy_on_context_create", ExportKind::Func, 2);
    exports.export("proxy_on_tick", ExportKind::Func, 3);
    exports.export("proxy_on_memory_allocate", ExportKind::Func, 4);
    exports.export("memory", ExportKind::Memory, 0);
    m.section(&exports);
    let mut code = CodeSection::new();
    let mut f = Function::new(vec![]);
    f.instruction(&Instruction::End);
    code.function(&f);
    let mut f = Function::new(vec![]);
    f.instruction(&Instruction::End);
    code.function(&f);
    let mut f = Function::new(vec![]);
    for arg in [
        1024,
        cluster.len() as i32,
        2048,
        hdrs.len() as i32,
        0,
        0,
        4096,
        trailers.len() as i32,
        1000,
        8192,
    ] {
        f.instruction(&Instruction::I32Const(arg));
    }
    f.instruction(&Instruction::Call(0));
    f.instruction(&Instruction::Drop);
    f.instruction(&Instruction::End);
    code.function(&f);
    let mut f = Function::new(vec![]);
    f.instruction(&Instruction::I32Const(16384));
    f.instruction(&Instruction::End);
    code.function(&f);
    m.section(&code);
    let mut data = DataSection::new();
    data.active(
        0,
        &ConstExpr::i32_const(1024),
        cluster.as_bytes().iter().copied(),
    );
    data.active(0, &ConstExpr::i32_const(2048), hdrs);
    data.active(0, &ConstExpr::i32_const(4096), trailers);
    m.section(&data);
    m.finish()
}

fn dispatch(cluster: &str, headers: &[(&str, &str)]) -> (usize, Vec<u32>) {
    let module = FilterModule::from_bytes(&dispatcher(cluster, headers)).unwrap();
    let mut e = Envoy::new(&module, EnvoyOptions::default()).unwrap();
    let vm = e.add_vm().unwrap();
    let (root, ok) = e.start_root(vm, b"").unwrap();
    assert!(ok);
    e.tick(vm, root).unwrap();
    let sh = e.shared();
    (
        sh.calls.len(),
        sh.rejected_calls.iter().map(|(_, s)| *s).collect(),
    )
}

#[test]
fn dispatch_needs_path_method_authority_and_a_known_cluster() {
    let full = [
        (":method", "POST"),
        (":path", "/v1"),
        (":authority", "capi.example"),
    ];
    assert_eq!(dispatch("capi_destination", &full), (1, vec![]));
    assert_eq!(
        dispatch("no_such_cluster", &full),
        (0, vec![status::BAD_ARGUMENT])
    );
    for missing in [":authority", ":path", ":method"] {
        let h: Vec<_> = full
            .iter()
            .copied()
            .filter(|(k, _)| *k != missing)
            .collect();
        assert_eq!(
            dispatch("capi_destination", &h),
            (0, vec![status::BAD_ARGUMENT]),
            "without {missing}"
        );
    }
}
