//! What the simulated IN-CSE does with a request, the way ACME does it where a device can tell
//! (ONEM2M.md §0, §5, §6): AE registration with assigned or chosen AE-IDs, containers with `mni`,
//! contentInstances, `la`/`ol`, update, delete, discovery (`fu=1`), subscriptions whose NOTIFYs go
//! to the subscriber over its WebSocket (needs `rr=true` and `poa` `ws://default`, as in ACME), and
//! the same `rsc` for the same mistakes (4000, 4001, 4004, 4008, 4103, 4105, 4117).

use m2m_primitive::model::resource_type as ty;
use m2m_primitive::time::{format_timestamp, now_millis};
use m2m_primitive::{Map, Operation, Request, Response, Rsc, Validator, Value};

use super::store::{Addr, Resource, Shard, Store};

/// A NOTIFY to deliver once the request's locks are released.
#[derive(Debug)]
pub struct Notification {
    /// The AE-ID whose connection gets it.
    pub target: String,
    pub request: Request,
}

/// The requester, as far as the connection tells.
#[derive(Debug, Clone, Default)]
pub struct Caller {
    /// `X-M2M-Origin` of the WebSocket handshake, if any.
    pub origin: Option<String>,
}

#[derive(Debug)]
pub struct Cse {
    pub store: Store,
    validator: Validator,
}

type Fail = (Rsc, String);

fn fail<T>(rsc: Rsc, dbg: impl Into<String>) -> Result<T, Fail> {
    Err((rsc, dbg.into()))
}

fn s(v: &str) -> Value {
    Value::String(v.to_string())
}

/// `fr` as an AE-ID-Stem (`/id-in/Cx` and `//sp/id-in/Cx` → `Cx`).
fn stem(fr: &str) -> &str {
    fr.rsplit('/').next().unwrap_or(fr)
}

impl Cse {
    pub fn new(shards: usize) -> Self {
        Self {
            store: Store::new("/id-in", "cse-in", shards),
            validator: Validator::default(),
        }
    }

    /// Answer one request; NOTIFYs it triggers are returned for delivery.
    pub fn handle(&self, caller: &Caller, req: &Request) -> (Response, Vec<Notification>) {
        let mut notes = Vec::new();
        let result = self
            .validator
            .request(req, now_millis())
            .map_err(|e| (e.rsc, e.dbg.clone()))
            .and_then(|()| self.dispatch(caller, req, &mut notes));
        let (rsc, pc) = match result {
            Ok(ok) => ok,
            Err((rsc, dbg)) => {
                notes.clear();
                let mut m = Map::new();
                m.insert("m2m:dbg", s(&dbg));
                (rsc, Some(Value::Object(m)))
            }
        };
        let rsp = Response {
            rsc,
            rqi: Some(req.rqi.clone()),
            pc,
            to: req.fr.clone(),
            fr: Some(self.store.csi.clone()),
            rvi: req.rvi.clone(),
            ..Response::default()
        };
        (rsp, notes)
    }

    fn dispatch(
        &self,
        caller: &Caller,
        req: &Request,
        notes: &mut Vec<Notification>,
    ) -> Result<(Rsc, Option<Value>), Fail> {
        if req.is_ae_create() {
            return self.register(req);
        }
        // ACME: a connection that did not name its originator carries registrations only.
        if caller.origin.is_none() {
            return fail(
                Rsc::ORIGINATOR_HAS_NO_PRIVILEGE,
                "this WebSocket connection has no X-M2M-Origin: registration only",
            );
        }
        let fr = req
            .fr
            .as_deref()
            .map(stem)
            .ok_or((Rsc::BAD_REQUEST, "missing fr".to_string()))?;
        let addr = self.store.resolve(&req.to)?;
        match req.op {
            Operation::Create => self.create(fr, &addr, req, notes),
            Operation::Retrieve => self.retrieve(fr, &addr, req),
            Operation::Update => self.update(fr, &addr, req),
            Operation::Delete => self.delete(fr, &addr),
            Operation::Notify => Ok((Rsc::OK, None)),
        }
    }

    fn new_attrs(&self, ty_: u32, ri: &str, rn: &str, pi: &str) -> Map {
        let now = s(&format_timestamp(now_millis(), false));
        let mut m = Map::new();
        m.insert("ty", Value::Int(i64::from(ty_)));
        m.insert("ri", s(ri));
        m.insert("rn", s(rn));
        m.insert("pi", s(pi));
        m.insert("ct", now.clone());
        m.insert("lt", now);
        m
    }

    fn register(&self, req: &Request) -> Result<(Rsc, Option<Value>), Fail> {
        let ae = content(req, "m2m:ae")?;
        let api = ae.get("api").and_then(Value::as_str).unwrap_or("");
        if !api.starts_with(['N', 'R', 'r']) {
            return fail(
                Rsc::BAD_REQUEST,
                format!("invalid api {api:?}: must start with N or R"),
            );
        }
        if ae.get("rr").is_none() || ae.get("srv").is_none() {
            return fail(Rsc::BAD_REQUEST, "rr and srv are mandatory in an AE create");
        }
        if ae.get("aei").is_some() {
            return fail(Rsc::BAD_REQUEST, "aei is not allowed in an AE create");
        }
        let aei = match req.fr.as_deref().map(stem) {
            None | Some("") | Some("C") => format!("C{:010x}", self.store.next_id()),
            Some("S") => format!("S{:010x}", self.store.next_id()),
            Some(f) if f.starts_with(['C', 'S']) => f.to_string(),
            Some(f) => {
                return fail(Rsc(4107), format!("originator {f:?} is not an AE-ID-Stem"));
            }
        };
        if self.store.path_of_ri(&aei).is_some() {
            return fail(
                Rsc::ORIGINATOR_HAS_ALREADY_REGISTERED,
                format!("{aei} is already registered"),
            );
        }
        let rn = ae
            .get("rn")
            .and_then(Value::as_str)
            .unwrap_or(&aei)
            .to_string();
        let path = format!("{}/{rn}", self.store.cb_rn);
        let mut attrs = self.new_attrs(ty::AE, &aei, &rn, self.store.cb_ri());
        for (k, v) in ae.iter().filter(|(k, _)| *k != "rn") {
            attrs.insert(k, v.clone());
        }
        attrs.insert("aei", s(&aei));
        {
            let mut shard = self.store.shard_for(&path);
            if shard.contains_key(&path) {
                return fail(
                    Rsc::CONFLICT,
                    format!("resource name {rn:?} is already used"),
                );
            }
            shard.insert(
                path.clone(),
                Resource {
                    ty: ty::AE,
                    attrs: attrs.clone(),
                    children: Vec::new(),
                    subscriptions: Vec::new(),
                    owner: aei.clone(),
                },
            );
        }
        self.store.index_ri(&aei, &path);
        Ok((Rsc::CREATED, Some(wrap("m2m:ae", attrs))))
    }

    fn create(
        &self,
        fr: &str,
        addr: &Addr,
        req: &Request,
        notes: &mut Vec<Notification>,
    ) -> Result<(Rsc, Option<Value>), Fail> {
        let Addr::Path(parent_path) = addr else {
            return fail(
                Rsc::OPERATION_NOT_ALLOWED,
                "cannot create under this target",
            );
        };
        let child_ty = req.ty.ok_or((Rsc::BAD_REQUEST, "missing ty".to_string()))?;
        let member = ty::member_name(child_ty).ok_or((
            Rsc::BAD_REQUEST,
            format!("unsupported resource type {child_ty}"),
        ))?;
        let body = content(req, member)?;
        let mut shard = self.store.shard_for(parent_path);
        let parent = shard
            .get(parent_path)
            .ok_or((Rsc::NOT_FOUND, "parent not found".to_string()))?;
        if parent.owner != fr {
            return fail(
                Rsc::ORIGINATOR_HAS_NO_PRIVILEGE,
                format!("{fr} may not create under {parent_path}"),
            );
        }
        let allowed = match parent.ty {
            ty::AE => matches!(child_ty, ty::CONTAINER | ty::SUBSCRIPTION),
            ty::CONTAINER => matches!(
                child_ty,
                ty::CONTAINER | ty::CONTENT_INSTANCE | ty::SUBSCRIPTION
            ),
            _ => false,
        };
        if !allowed {
            return fail(
                Rsc(4108),
                format!(
                    "a resource of type {child_ty} cannot be created under type {}",
                    parent.ty
                ),
            );
        }
        let parent_ri = parent.ri().to_string();
        let owner = parent.owner.clone();
        let id = self.store.next_id();
        let prefix = match child_ty {
            ty::CONTAINER => "cnt",
            ty::CONTENT_INSTANCE => "cin",
            ty::SUBSCRIPTION => "sub",
            _ => "res",
        };
        let ri = format!("{prefix}{id}");
        let rn = body
            .get("rn")
            .and_then(Value::as_str)
            .map_or_else(|| format!("{prefix}_{id}"), str::to_string);
        let path = format!("{parent_path}/{rn}");
        if shard.contains_key(&path) {
            return fail(
                Rsc::CONFLICT,
                format!("resource name {rn:?} is already used"),
            );
        }
        let mut attrs = self.new_attrs(child_ty, &ri, &rn, &parent_ri);
        for (k, v) in body.iter().filter(|(k, _)| *k != "rn") {
            attrs.insert(k, v.clone());
        }
        match child_ty {
            ty::CONTAINER => {
                attrs.insert("cni", Value::Int(0));
                attrs.insert("cbs", Value::Int(0));
                attrs.insert("st", Value::Int(0));
            }
            ty::CONTENT_INSTANCE => {
                let cs = attrs.get("con").map_or(0, value_size);
                attrs.insert("cs", Value::Int(cs as i64));
                attrs.insert("st", Value::Int(0));
            }
            ty::SUBSCRIPTION if !matches!(attrs.get("nu"), Some(Value::Array(a)) if !a.is_empty()) =>
            {
                return fail(Rsc::BAD_REQUEST, "nu is mandatory in a subscription");
            }
            _ => {}
        }
        shard.insert(
            path.clone(),
            Resource {
                ty: child_ty,
                attrs: attrs.clone(),
                children: Vec::new(),
                subscriptions: Vec::new(),
                owner,
            },
        );
        if let Some(p) = shard.get_mut(parent_path) {
            p.children.push(rn.clone());
            if child_ty == ty::SUBSCRIPTION {
                p.subscriptions.push(rn.clone());
            }
        }
        if child_ty == ty::CONTENT_INSTANCE {
            cin_added(&mut shard, parent_path, &self.store);
        }
        self.store.index_ri(&ri, &path);
        let rep = wrap(member, attrs);
        notify_subscribers(&shard, parent_path, 3, &rep, notes, &self.store.csi);
        Ok((Rsc::CREATED, Some(rep)))
    }

    fn retrieve(&self, fr: &str, addr: &Addr, req: &Request) -> Result<(Rsc, Option<Value>), Fail> {
        let path = match addr {
            Addr::CseBase => {
                let mut m = self.new_attrs(ty::CSE_BASE, self.store.cb_ri(), &self.store.cb_rn, "");
                m.remove("pi");
                m.insert("csi", s(&self.store.csi));
                m.insert("cst", Value::Int(1));
                m.insert("srv", Value::Array(vec![s("2a"), s("3"), s("4"), s("5")]));
                m.insert("poa", Value::Array(vec![]));
                return Ok((Rsc::OK, Some(wrap("m2m:cb", m))));
            }
            Addr::Virtual { container, latest } => {
                let shard = self.store.shard_for(container);
                let cnt = shard
                    .get(container)
                    .ok_or((Rsc::NOT_FOUND, "not found".to_string()))?;
                check_owner(cnt, fr)?;
                let mut cins = cnt.children.iter().filter_map(|rn| {
                    let r = shard.get(&format!("{container}/{rn}"))?;
                    (r.ty == ty::CONTENT_INSTANCE).then_some(r)
                });
                let cin = if *latest {
                    cins.next_back()
                } else {
                    cins.next()
                };
                let cin = cin.ok_or((
                    Rsc::NOT_FOUND,
                    "the container has no contentInstance".to_string(),
                ))?;
                return Ok((Rsc::OK, Some(wrap("m2m:cin", cin.attrs.clone()))));
            }
            Addr::Path(p) => p,
        };
        let shard = self.store.shard_for(path);
        let r = shard
            .get(path)
            .ok_or((Rsc::NOT_FOUND, "not found".to_string()))?;
        check_owner(r, fr)?;
        let fc = req.fc.as_ref().and_then(Value::as_object);
        if fc.and_then(|f| f.get("fu")).and_then(Value::as_i64_lenient) == Some(1) {
            return Ok((Rsc::OK, Some(discover(&shard, path, fc.expect("checked"))?)));
        }
        let member = ty::member_name(r.ty).unwrap_or("m2m:res");
        Ok((Rsc::OK, Some(wrap(member, r.attrs.clone()))))
    }

    fn update(&self, fr: &str, addr: &Addr, req: &Request) -> Result<(Rsc, Option<Value>), Fail> {
        let Addr::Path(path) = addr else {
            return fail(Rsc::OPERATION_NOT_ALLOWED, "this target cannot be updated");
        };
        let mut shard = self.store.shard_for(path);
        let r = shard
            .get_mut(path)
            .ok_or((Rsc::NOT_FOUND, "not found".to_string()))?;
        check_owner(r, fr)?;
        let member = ty::member_name(r.ty).unwrap_or("m2m:res");
        let body = content(req, member)?;
        for (k, v) in body.iter() {
            if matches!(
                k,
                "ri" | "rn" | "pi" | "ty" | "ct" | "aei" | "cni" | "cbs" | "st"
            ) {
                return fail(Rsc::BAD_REQUEST, format!("attribute {k} cannot be updated"));
            }
            r.attrs.insert(k, v.clone());
        }
        r.attrs
            .insert("lt", s(&format_timestamp(now_millis(), false)));
        Ok((Rsc::UPDATED, Some(wrap(member, r.attrs.clone()))))
    }

    fn delete(&self, fr: &str, addr: &Addr) -> Result<(Rsc, Option<Value>), Fail> {
        let Addr::Path(path) = addr else {
            return fail(Rsc::OPERATION_NOT_ALLOWED, "this target cannot be deleted");
        };
        let mut shard = self.store.shard_for(path);
        let r = shard
            .get(path)
            .ok_or((Rsc::NOT_FOUND, "not found".to_string()))?;
        check_owner(r, fr)?;
        let cin_size = (r.ty == ty::CONTENT_INSTANCE).then(|| cin_size(r));
        remove_subtree(&mut shard, path, &self.store);
        if let Some((parent, rn)) = path.rsplit_once('/') {
            if let Some(p) = shard.get_mut(parent) {
                p.children.retain(|c| c != rn);
                p.subscriptions.retain(|c| c != rn);
                if let Some(cs) = cin_size {
                    add_to_int(&mut p.attrs, "cni", -1);
                    add_to_int(&mut p.attrs, "cbs", -cs);
                }
            }
        }
        Ok((Rsc::DELETED, None))
    }
}

fn check_owner(r: &Resource, fr: &str) -> Result<(), Fail> {
    if r.owner == fr {
        Ok(())
    } else {
        fail(
            Rsc::ORIGINATOR_HAS_NO_PRIVILEGE,
            format!("{fr} has no privilege on {}", r.ri()),
        )
    }
}

fn wrap(member: &str, attrs: Map) -> Value {
    let mut m = Map::new();
    m.insert(member, Value::Object(attrs));
    Value::Object(m)
}

/// The request's `pc` member `member` (e.g. `m2m:cnt`), which must be an object.
fn content<'a>(req: &'a Request, member: &str) -> Result<&'a Map, Fail> {
    req.pc
        .as_ref()
        .and_then(Value::as_object)
        .and_then(|pc| pc.get(member))
        .and_then(Value::as_object)
        .ok_or((
            Rsc::BAD_REQUEST,
            format!("content must be {{\"{member}\": {{…}}}}"),
        ))
}

fn value_size(v: &Value) -> usize {
    match v {
        Value::String(s) => s.len(),
        Value::Bytes(b) => b.len(),
        other => serde_json::to_string(other).map_or(0, |s| s.len()),
    }
}

fn remove_subtree(shard: &mut Shard, path: &str, store: &Store) {
    if let Some(r) = shard.remove(path) {
        store.unindex_ri(r.ri());
        for c in &r.children {
            remove_subtree(shard, &format!("{path}/{c}"), store);
        }
    }
}

fn cin_size(r: &Resource) -> i64 {
    r.attrs
        .get("cs")
        .and_then(Value::as_i64_lenient)
        .unwrap_or(0)
}

fn add_to_int(attrs: &mut Map, key: &str, delta: i64) {
    let v = attrs.get(key).and_then(Value::as_i64_lenient).unwrap_or(0);
    attrs.insert(key, Value::Int(v + delta));
}

/// A contentInstance was just added as the container's newest child: count it in `cni`, `cbs`
/// and `st`, then drop the oldest contentInstances beyond `mni`. Incremental, so a container
/// without `mni` does not make every create walk all its instances.
fn cin_added(shard: &mut Shard, container: &str, store: &Store) {
    let newest = shard
        .get(container)
        .and_then(|c| c.children.last())
        .and_then(|rn| shard.get(&format!("{container}/{rn}")))
        .map_or(0, cin_size);
    let Some(cnt) = shard.get_mut(container) else {
        return;
    };
    add_to_int(&mut cnt.attrs, "cni", 1);
    add_to_int(&mut cnt.attrs, "cbs", newest);
    add_to_int(&mut cnt.attrs, "st", 1);
    let Some(mni) = cnt.attrs.get("mni").and_then(Value::as_i64_lenient) else {
        return;
    };
    loop {
        let Some(cnt) = shard.get(container) else {
            return;
        };
        if cnt
            .attrs
            .get("cni")
            .and_then(Value::as_i64_lenient)
            .unwrap_or(0)
            <= mni.max(0)
        {
            return;
        }
        // The oldest contentInstance is the first child that is one.
        let Some((i, path, cs)) = cnt.children.iter().enumerate().find_map(|(i, rn)| {
            let path = format!("{container}/{rn}");
            let r = shard.get(&path).filter(|r| r.ty == ty::CONTENT_INSTANCE)?;
            Some((i, path, cin_size(r)))
        }) else {
            return;
        };
        remove_subtree(shard, &path, store);
        if let Some(cnt) = shard.get_mut(container) {
            cnt.children.remove(i);
            add_to_int(&mut cnt.attrs, "cni", -1);
            add_to_int(&mut cnt.attrs, "cbs", -cs);
        }
    }
}

/// Discovery under `path`: structured IDs of the descendants that match `ty`/`lbl`, up to `lim`.
fn discover(shard: &Shard, path: &str, fc: &Map) -> Result<Value, Fail> {
    let want_ty: Option<Vec<i64>> = match fc.get("ty") {
        None => None,
        Some(Value::Array(a)) => Some(a.iter().filter_map(Value::as_i64_lenient).collect()),
        // ACME: "type mismatch or unknown; expected type: list".
        Some(_) => return fail(Rsc::BAD_REQUEST, "fc.ty: expected a list"),
    };
    let want_lbl = fc.get("lbl").and_then(|v| match v {
        Value::Array(a) => Some(
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect::<Vec<_>>(),
        ),
        Value::String(s) => Some(vec![s.clone()]),
        _ => None,
    });
    let lim = fc
        .get("lim")
        .and_then(Value::as_i64_lenient)
        .map_or(usize::MAX, |l| l.max(0) as usize);
    let mut found = Vec::new();
    let mut stack = vec![path.to_string()];
    while let Some(p) = stack.pop() {
        let Some(r) = shard.get(&p) else { continue };
        if p != path {
            let ty_ok = want_ty
                .as_ref()
                .is_none_or(|t| t.contains(&i64::from(r.ty)));
            let lbl_ok = want_lbl.as_ref().is_none_or(|want| {
                matches!(r.attrs.get("lbl"), Some(Value::Array(have)) if want.iter().any(|w| have.iter().any(|h| h.as_str() == Some(w))))
            });
            if ty_ok && lbl_ok {
                found.push(Value::String(p.clone()));
                if found.len() >= lim {
                    break;
                }
            }
        }
        for c in r.children.iter().rev() {
            stack.push(format!("{p}/{c}"));
        }
    }
    let mut m = Map::new();
    m.insert("m2m:uril", Value::Array(found));
    Ok(Value::Object(m))
}

/// NOTIFYs for the subscriptions of `parent` that watch event type `net`.
fn notify_subscribers(
    shard: &Shard,
    parent: &str,
    net: i64,
    rep: &Value,
    notes: &mut Vec<Notification>,
    csi: &str,
) {
    let Some(p) = shard.get(parent) else { return };
    for rn in &p.subscriptions {
        let sub_path = format!("{parent}/{rn}");
        let Some(sub) = shard.get(&sub_path).filter(|r| r.ty == ty::SUBSCRIPTION) else {
            continue;
        };
        let watches = match sub
            .attrs
            .get("enc")
            .and_then(Value::as_object)
            .and_then(|e| e.get("net"))
        {
            Some(Value::Array(nets)) => nets.iter().any(|n| n.as_i64_lenient() == Some(net)),
            _ => net == 1,
        };
        if !watches {
            continue;
        }
        let Some(Value::Array(nu)) = sub.attrs.get("nu") else {
            continue;
        };
        let mut nev = Map::new();
        nev.insert("rep", rep.clone());
        nev.insert("net", Value::Int(net));
        let mut sgn = Map::new();
        sgn.insert("nev", Value::Object(nev));
        sgn.insert("sur", Value::String(format!("{csi}/{}", sub.ri())));
        for target in nu.iter().filter_map(Value::as_str) {
            let mut r = Request::new(
                Operation::Notify,
                target,
                format!("n{}", fastrand::u64(..)),
                "3",
            );
            r.fr = Some(csi.to_string());
            let mut pc = Map::new();
            pc.insert("m2m:sgn", Value::Object(sgn.clone()));
            r.pc = Some(Value::Object(pc));
            notes.push(Notification {
                target: stem(target).to_string(),
                request: r,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use m2m_primitive::{Format, Primitive};

    fn req(json: &str) -> Request {
        match m2m_primitive::decode(Format::Json, json.as_bytes()).unwrap() {
            Primitive::Request(r) => r,
            _ => panic!(),
        }
    }

    fn call(cse: &Cse, origin: Option<&str>, json: &str) -> (Response, Vec<Notification>) {
        cse.handle(
            &Caller {
                origin: origin.map(str::to_string),
            },
            &req(json),
        )
    }

    #[test]
    fn a_device_session_gets_acme_answers() {
        let cse = Cse::new(4);
        let ae = r#"{"op":1,"to":"cse-in","fr":"Cdev","rqi":"1","rvi":"3","ty":2,"pc":{"m2m:ae":{"rn":"dev","api":"Nx","rr":true,"srv":["3"],"poa":["ws://default"]}}}"#;
        let (r, _) = call(&cse, None, ae);
        assert_eq!(r.rsc, Rsc::CREATED, "{r:?}");
        assert_eq!(r.fr.as_deref(), Some("/id-in"));
        assert_eq!(
            call(&cse, None, ae).0.rsc,
            Rsc::ORIGINATOR_HAS_ALREADY_REGISTERED
        );
        // Without X-M2M-Origin only registrations are served.
        let cnt = r#"{"op":1,"to":"cse-in/dev","fr":"Cdev","rqi":"2","rvi":"3","ty":3,"pc":{"m2m:cnt":{"rn":"c","mni":2}}}"#;
        assert_eq!(
            call(&cse, None, cnt).0.rsc,
            Rsc::ORIGINATOR_HAS_NO_PRIVILEGE
        );
        let o = Some("Cdev");
        assert_eq!(call(&cse, o, cnt).0.rsc, Rsc::CREATED);
        assert_eq!(call(&cse, o, cnt).0.rsc, Rsc::CONFLICT);
        let sub = r#"{"op":1,"to":"cse-in/dev/c","fr":"Cdev","rqi":"3","rvi":"3","ty":23,"pc":{"m2m:sub":{"rn":"s","enc":{"net":[3]},"nu":["Cdev"]}}}"#;
        assert_eq!(call(&cse, o, sub).0.rsc, Rsc::CREATED);
        for i in 0..3 {
            let cin = format!(
                r#"{{"op":1,"to":"cse-in/dev/c","fr":"Cdev","rqi":"c{i}","rvi":"3","ty":4,"pc":{{"m2m:cin":{{"con":"v{i}"}}}}}}"#
            );
            let (r, notes) = call(&cse, o, &cin);
            assert_eq!(r.rsc, Rsc::CREATED);
            assert_eq!(notes.len(), 1);
            assert_eq!(notes[0].target, "Cdev");
        }
        let (la, _) = call(
            &cse,
            o,
            r#"{"op":2,"to":"cse-in/dev/c/la","fr":"Cdev","rqi":"4","rvi":"3"}"#,
        );
        assert_eq!(la.rsc, Rsc::OK);
        let con = la
            .pc
            .as_ref()
            .unwrap()
            .as_object()
            .unwrap()
            .get("m2m:cin")
            .unwrap()
            .as_object()
            .unwrap()
            .get("con")
            .cloned();
        assert_eq!(con, Some(s("v2")));
        // mni = 2: the oldest went, so `ol` is the second.
        let (ol, _) = call(
            &cse,
            o,
            r#"{"op":2,"to":"cse-in/dev/c/ol","fr":"Cdev","rqi":"5","rvi":"3"}"#,
        );
        let cnt_after = call(
            &cse,
            o,
            r#"{"op":2,"to":"cse-in/dev/c","fr":"Cdev","rqi":"6","rvi":"3"}"#,
        )
        .0;
        let ol_con = ol
            .pc
            .unwrap()
            .as_object()
            .unwrap()
            .get("m2m:cin")
            .unwrap()
            .as_object()
            .unwrap()
            .get("con")
            .cloned();
        assert_eq!(ol_con, Some(s("v1")));
        let cni = cnt_after
            .pc
            .unwrap()
            .as_object()
            .unwrap()
            .get("m2m:cnt")
            .unwrap()
            .as_object()
            .unwrap()
            .get("cni")
            .cloned();
        assert_eq!(cni, Some(Value::Int(2)));
        let (d, _) = call(
            &cse,
            o,
            r#"{"op":2,"to":"cse-in/dev","fr":"Cdev","rqi":"7","rvi":"3","fc":{"fu":1,"ty":[4]}}"#,
        );
        let uril =
            d.pc.unwrap()
                .as_object()
                .unwrap()
                .get("m2m:uril")
                .cloned()
                .unwrap();
        assert!(matches!(&uril, Value::Array(a) if a.len() == 2), "{uril:?}");
        let (d, _) = call(
            &cse,
            o,
            r#"{"op":2,"to":"cse-in/dev","fr":"Cdev","rqi":"7b","rvi":"3","fc":{"fu":1,"ty":4}}"#,
        );
        assert_eq!(d.rsc, Rsc::BAD_REQUEST);
        let (u, _) = call(
            &cse,
            o,
            r#"{"op":3,"to":"cse-in/dev/c","fr":"Cdev","rqi":"8","rvi":"3","pc":{"m2m:cnt":{"lbl":["x"]}}}"#,
        );
        assert_eq!(u.rsc, Rsc::UPDATED);
        // Someone else's resources.
        assert_eq!(
            call(
                &cse,
                Some("Cother"),
                r#"{"op":2,"to":"cse-in/dev/c","fr":"Cother","rqi":"9","rvi":"3"}"#
            )
            .0
            .rsc,
            Rsc::ORIGINATOR_HAS_NO_PRIVILEGE
        );
        assert_eq!(
            call(
                &cse,
                o,
                r#"{"op":2,"to":"cse-in/nope","fr":"Cdev","rqi":"a","rvi":"3"}"#
            )
            .0
            .rsc,
            Rsc::NOT_FOUND
        );
        assert_eq!(
            call(
                &cse,
                o,
                r#"{"op":2,"to":"cse-in/dev","fr":"Cdev","rqi":"b","rvi":"1"}"#
            )
            .0
            .rsc,
            Rsc::RELEASE_VERSION_NOT_SUPPORTED
        );
        assert_eq!(call(&cse, o, r#"{"op":2,"to":"cse-in/dev","fr":"Cdev","rqi":"c","rvi":"3","rqet":"20000101T000000"}"#).0.rsc, Rsc::REQUEST_TIMEOUT);
        assert_eq!(
            call(
                &cse,
                o,
                r#"{"op":4,"to":"cse-in/dev","fr":"Cdev","rqi":"d","rvi":"3"}"#
            )
            .0
            .rsc,
            Rsc::DELETED
        );
        assert_eq!(
            call(
                &cse,
                o,
                r#"{"op":2,"to":"cse-in/dev/c","fr":"Cdev","rqi":"e","rvi":"3"}"#
            )
            .0
            .rsc,
            Rsc::NOT_FOUND
        );
        // Registered again after the delete, this time with a CSE-assigned AE-ID.
        let (r, _) = call(
            &cse,
            None,
            r#"{"op":1,"to":"cse-in","fr":"C","rqi":"f","rvi":"3","ty":2,"pc":{"m2m:ae":{"api":"Nx","rr":false,"srv":["3"]}}}"#,
        );
        assert_eq!(r.rsc, Rsc::CREATED);
        let bad = r#"{"op":1,"to":"cse-in","rqi":"g","rvi":"3","ty":2,"pc":{"m2m:ae":{"api":"xx","rr":true,"srv":["3"]}}}"#;
        assert_eq!(call(&cse, None, bad).0.rsc, Rsc::BAD_REQUEST);
        let no_rr = r#"{"op":1,"to":"cse-in","rqi":"h","rvi":"3","ty":2,"pc":{"m2m:ae":{"api":"Nx","srv":["3"]}}}"#;
        assert_eq!(call(&cse, None, no_rr).0.rsc, Rsc::BAD_REQUEST);
    }
}
