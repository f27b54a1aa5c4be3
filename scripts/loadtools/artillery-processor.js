// Builds the oneM2M primitives for artillery.yml: one AE per virtual user, then a random pick of
// the operation mix per iteration (create_cin 50, retrieve_la 30, update 10, discovery 10).
const { threadId } = require("worker_threads");

// Virtual users run in worker threads of one process, and the simulated CSE keeps its AEs between
// runs: a random run id, the thread and a counter make every AE name unique.
const run = Math.random().toString(36).slice(2, 8);
let devices = 0;
const con = "x".repeat(64);

// The first flow step (`connect`): the device's originator goes into the handshake as
// X-M2M-Origin (TS-0020: a connection without it may carry only registrations).
function connect(wsArgs, context, done) {
  const aei = `Cart${run}t${threadId}x${devices++}`;
  context.vars.aei = aei;
  wsArgs.options = { ...(wsArgs.options || {}) };
  wsArgs.options.headers = { ...(wsArgs.options.headers || {}), "X-M2M-Origin": aei };
  return done();
}

function device(context, events, done) {
  const aei = context.vars.aei;
  const ae = `cse-in/${aei}`;
  const v = context.vars;
  v.aei = aei;
  v.cnt = `${ae}/cnt0`;
  v.seq = 0;
  const base = { fr: aei, rvi: "3" };
  v.register = JSON.stringify({ ...base, op: 1, to: "cse-in", ty: 2, rqi: "r",
    pc: { "m2m:ae": { rn: aei, api: "Nartillery", rr: true, srv: ["3"], poa: ["ws://default"] } } });
  v.container = JSON.stringify({ ...base, op: 1, to: ae, ty: 3, rqi: "c",
    pc: { "m2m:cnt": { rn: "cnt0", mni: 10 } } });
  v.first = JSON.stringify({ ...base, op: 1, to: v.cnt, ty: 4, rqi: "i", pc: { "m2m:cin": { con } } });
  return done();
}

function nextOp(context, events, done) {
  const v = context.vars;
  v.seq += 1;
  const rqi = String(v.seq);
  const base = { fr: v.aei, rvi: "3", rqi };
  const pick = Math.random() * 100;
  let p;
  if (pick < 50) p = { ...base, op: 1, to: v.cnt, ty: 4, pc: { "m2m:cin": { con } } };
  else if (pick < 80) p = { ...base, op: 2, to: `${v.cnt}/la` };
  else if (pick < 90) p = { ...base, op: 3, to: v.cnt, pc: { "m2m:cnt": { lbl: [`seq-${v.seq}`] } } };
  else p = { ...base, op: 2, to: `cse-in/${v.aei}`, fc: { fu: 1, ty: [3], lim: 10 } };
  v.rqi = rqi;
  v.op = JSON.stringify(p);
  return done();
}

module.exports = { connect, device, nextOp };
