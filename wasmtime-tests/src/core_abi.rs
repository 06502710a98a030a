//! A wasmtime host of the `capi-core-abi` module: the code the README shows, used by the
//! tests (wasm vs native, byte for byte) and the benchmark.

use wasmtime::{Engine, Instance, Memory, Module, Store, TypedFunc};

use crate::envoy::HostError;

fn err(e: impl std::fmt::Display) -> HostError {
    HostError::Setup(e.to_string())
}

/// The compiled module.
pub struct CoreAbiModule {
    pub engine: Engine,
    pub module: Module,
}

impl CoreAbiModule {
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, HostError> {
        let engine = Engine::default();
        let module = Module::new(&engine, bytes).map_err(err)?;
        Ok(CoreAbiModule { engine, module })
    }

    pub fn instantiate(&self) -> Result<CoreAbi, HostError> {
        CoreAbi::new(&self.engine, &self.module)
    }
}

/// `capi_build_request`'s parameters: three (ptr, len) pairs and `now_ms`.
type BuildArgs = (u32, u32, u32, u32, u32, u32, i64);

/// One instance: its memory and its exports.
pub struct CoreAbi {
    store: Store<()>,
    memory: Memory,
    version: TypedFunc<(), u32>,
    alloc: TypedFunc<u32, u32>,
    free: TypedFunc<(u32, u32), ()>,
    build_request: TypedFunc<BuildArgs, u64>,
    hash_identifier: TypedFunc<(u32, u32, u32, u32, u32), u64>,
    plan: TypedFunc<(u32, u32, u32, u32), u64>,
}

impl CoreAbi {
    pub fn new(engine: &Engine, module: &Module) -> Result<Self, HostError> {
        let mut store = Store::new(engine, ());
        // The module imports nothing.
        let instance = Instance::new(&mut store, module, &[]).map_err(err)?;
        let memory = instance
            .get_memory(&mut store, "memory")
            .ok_or_else(|| err("no memory export"))?;
        Ok(CoreAbi {
            version: instance
                .get_typed_func(&mut store, "capi_abi_version")
                .map_err(err)?,
            alloc: instance
                .get_typed_func(&mut store, "capi_alloc")
                .map_err(err)?,
            free: instance
                .get_typed_func(&mut store, "capi_free")
                .map_err(err)?,
            build_request: instance
                .get_typed_func(&mut store, "capi_build_request")
                .map_err(err)?,
            hash_identifier: instance
                .get_typed_func(&mut store, "capi_hash_identifier")
                .map_err(err)?,
            plan: instance
                .get_typed_func(&mut store, "capi_plan")
                .map_err(err)?,
            memory,
            store,
        })
    }

    pub fn version(&mut self) -> Result<u32, HostError> {
        self.version.call(&mut self.store, ()).map_err(err)
    }

    /// Copies `bytes` into a fresh `capi_alloc` block: (ptr, len).
    fn put(&mut self, bytes: &[u8]) -> Result<(u32, u32), HostError> {
        let len = bytes.len() as u32;
        let ptr = self.alloc.call(&mut self.store, len).map_err(err)?;
        if ptr == 0 {
            return Err(err("capi_alloc returned 0"));
        }
        self.memory
            .write(&mut self.store, ptr as usize, bytes)
            .map_err(err)?;
        Ok((ptr, len))
    }

    /// Reads and frees a result handle `(ptr << 32) | len`.
    fn take(&mut self, handle: u64) -> Result<Vec<u8>, HostError> {
        if handle == 0 {
            return Err(err("the module could not allocate its result"));
        }
        let (ptr, len) = ((handle >> 32) as u32, handle as u32);
        let mut out = vec![0u8; len as usize];
        self.memory
            .read(&self.store, ptr as usize, &mut out)
            .map_err(err)?;
        self.free.call(&mut self.store, (ptr, len)).map_err(err)?;
        Ok(out)
    }

    fn release(&mut self, blocks: &[(u32, u32)]) -> Result<(), HostError> {
        for (p, l) in blocks {
            self.free.call(&mut self.store, (*p, *l)).map_err(err)?;
        }
        Ok(())
    }

    /// `capi_build_request`: the JSON result document.
    pub fn build_request(
        &mut self,
        config: &[u8],
        input: &[u8],
        secrets: &[u8],
        now_ms: i64,
    ) -> Result<Vec<u8>, HostError> {
        let c = self.put(config)?;
        let i = self.put(input)?;
        let s = self.put(secrets)?;
        let h = self
            .build_request
            .call(&mut self.store, (c.0, c.1, i.0, i.1, s.0, s.1, now_ms))
            .map_err(err)?;
        self.release(&[c, i, s])?;
        self.take(h)
    }

    /// `capi_hash_identifier`.
    pub fn hash_identifier(
        &mut self,
        kind: u32,
        value: &[u8],
        calling_code: &[u8],
    ) -> Result<Vec<u8>, HostError> {
        let v = self.put(value)?;
        let cc = self.put(calling_code)?;
        let h = self
            .hash_identifier
            .call(&mut self.store, (kind, v.0, v.1, cc.0, cc.1))
            .map_err(err)?;
        self.release(&[v, cc])?;
        self.take(h)
    }

    /// `capi_plan`.
    pub fn plan(&mut self, config: &[u8], request: &[u8]) -> Result<Vec<u8>, HostError> {
        let c = self.put(config)?;
        let r = self.put(request)?;
        let h = self
            .plan
            .call(&mut self.store, (c.0, c.1, r.0, r.1))
            .map_err(err)?;
        self.release(&[c, r])?;
        self.take(h)
    }

    /// Bytes of linear memory (to check that repeated calls do not leak).
    pub fn memory_bytes(&self) -> usize {
        self.memory.data_size(&self.store)
    }
}
