#!/usr/bin/env node
// Spate test client (Node.js, kafkajs 2.x).
//
//   produce --bootstrap H:P --topic T --count N --acks all|1 --codec gzip --client NAME
//   consume --bootstrap H:P --topic T --partitions P --expect N --timeout-s S
//   group-consume --bootstrap H:P --topic T --group G --member-name M [--assignor range|roundrobin]
//                 [--commit sync|auto] [--max-records N] [--idle-exit-s S] [--session-timeout-ms MS] [--timeout-s S]
//
// kafkajs ships only gzip (snappy/lz4/zstd need third-party codecs), so --codec must be gzip or none.
// kafkajs has no group-less consumer: its Consumer always joins a group, and Spate has no groups
// at the time it was written. `consume` therefore drives kafkajs's own Cluster/Broker layer (Metadata, ListOffsets, Fetch
// encoding and RecordBatch decoding/decompression all stay kafkajs's) with assign-style offsets.
'use strict'

process.env.KAFKAJS_NO_PARTITIONER_WARNING = '1'

// Security from the environment, for every subcommand (issue 19): SPATE_SECURITY_PROTOCOL
// (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL), SPATE_SASL_MECHANISM (PLAIN, SCRAM-SHA-256,
// SCRAM-SHA-512), SPATE_SASL_USERNAME, SPATE_SASL_PASSWORD, SPATE_SSL_CA and, for mTLS,
// SPATE_SSL_CERT with SPATE_SSL_KEY (PEM files). Spread into `new Kafka` and `new Cluster`.
function security () {
  const env = process.env
  const protocol = (env.SPATE_SECURITY_PROTOCOL || 'PLAINTEXT').toUpperCase()
  const out = {}
  if (protocol === 'SSL' || protocol === 'SASL_SSL') {
    const fs = require('fs')
    out.ssl = { ca: [fs.readFileSync(env.SPATE_SSL_CA, 'utf8')] }
    if (env.SPATE_SSL_CERT) {
      out.ssl.cert = fs.readFileSync(env.SPATE_SSL_CERT, 'utf8')
      out.ssl.key = fs.readFileSync(env.SPATE_SSL_KEY, 'utf8')
    }
  }
  if (protocol === 'SASL_PLAINTEXT' || protocol === 'SASL_SSL') {
    out.sasl = {
      mechanism: env.SPATE_SASL_MECHANISM.toLowerCase(),
      username: env.SPATE_SASL_USERNAME,
      password: env.SPATE_SASL_PASSWORD,
    }
  }
  return out
}

const { Kafka, CompressionTypes, logLevel, PartitionAssigners, AssignerProtocol } = require('kafkajs')
const Cluster = require('kafkajs/src/cluster')
const { createLogger } = require('kafkajs/src/loggers')
const LoggerConsole = require('kafkajs/src/loggers/console')
const defaultSocketFactory = require('kafkajs/src/network/socketFactory')

const BASE_TS = 1700000000000n
const FILLER = '0123456789abcdefghijklmnopqrstuvwxyz'

const key = (client, i) => `${client}-k${i % 500}`
function value(client, i) {
  let s = `${client}-v${i}-`
  const target = 100 + (i % 101)
  for (let j = 0; s.length < target; j++) s += FILLER[j % FILLER.length]
  return s
}

function usage(code) {
  process.stderr.write(
    'usage:\n  client.js produce --bootstrap H:P --topic T --count N --acks all|1 --codec gzip|none --client NAME\n' +
      '  client.js consume --bootstrap H:P --topic T --partitions P --expect N --timeout-s S\n'
  )
  process.exit(code)
}

function parseArgs(argv) {
  const opts = {}
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    if (a === '--help' || a === '-h') usage(0)
    if (!a.startsWith('--') || i + 1 >= argv.length) {
      process.stderr.write(`bad argument: ${a}\n`)
      usage(2)
    }
    opts[a.slice(2)] = argv[++i]
  }
  return opts
}

function req(opts, k) {
  if (opts[k] === undefined) {
    process.stderr.write(`missing --${k}\n`)
    usage(2)
  }
  return opts[k]
}

async function produce(opts) {
  const bootstrap = req(opts, 'bootstrap')
  const topic = req(opts, 'topic')
  const count = parseInt(req(opts, 'count'), 10)
  const acks = (opts.acks || 'all') === 'all' ? -1 : parseInt(opts.acks, 10)
  const codecName = opts.codec || 'gzip'
  const client = opts.client || 'kafkajs'
  const codecs = { gzip: CompressionTypes.GZIP, none: CompressionTypes.None }
  if (!(codecName in codecs)) {
    process.stderr.write(`kafkajs client supports --codec gzip|none, not ${codecName}\n`)
    return 2
  }
  const kafka = new Kafka({ clientId: client, brokers: [bootstrap], logLevel: logLevel.WARN, ...security() })
  const producer = kafka.producer({ allowAutoTopicCreation: false })
  await producer.connect()
  const batchSize = 500
  let acked = 0
  try {
    // Sequential sends: kafkajs retries per request, so overlapping sends could reorder a
    // partition's records after a retry; the tests assert production order.
    for (let start = 0; start < count; start += batchSize) {
      const messages = []
      for (let i = start; i < Math.min(count, start + batchSize); i++) {
        messages.push({
          key: key(client, i),
          value: value(client, i),
          headers: { i: String(i), client },
          timestamp: (BASE_TS + BigInt(i)).toString(),
        })
      }
      await producer.send({ topic, messages, acks, compression: codecs[codecName], timeout: 30000 })
      acked += messages.length
    }
  } finally {
    await producer.disconnect()
  }
  process.stderr.write(`kafkajs produce: acked=${acked}\n`)
  return acked === count ? 0 : 1
}

async function consume(opts) {
  const bootstrap = req(opts, 'bootstrap')
  const topic = req(opts, 'topic')
  const partitions = parseInt(req(opts, 'partitions'), 10)
  const expect = parseInt(req(opts, 'expect'), 10)
  const deadline = Date.now() + parseFloat(opts['timeout-s'] || '60') * 1000

  const cluster = new Cluster({
    logger: createLogger({ level: logLevel.WARN, logCreator: LoggerConsole }),
    socketFactory: defaultSocketFactory(),
    brokers: [bootstrap],
    ...security(),
    clientId: 'kafkajs-consumer',
    connectionTimeout: 3000,
    metadataMaxAge: 300000,
    allowAutoTopicCreation: false,
    isolationLevel: 0,
  })
  await cluster.connect()
  await cluster.addTargetTopic(topic)

  const next = new Map()
  for (let p = 0; p < partitions; p++) next.set(p, '0')
  let got = 0
  const out = []
  while (got < expect && Date.now() < deadline) {
    await cluster.refreshMetadataIfNecessary()
    const meta = cluster.findTopicPartitionMetadata(topic)
    const byLeader = new Map()
    for (const pm of meta) {
      if (pm.partitionId >= partitions) continue
      if (!byLeader.has(pm.leader)) byLeader.set(pm.leader, [])
      byLeader.get(pm.leader).push(pm.partitionId)
    }
    let progressed = false
    for (const [leader, parts] of byLeader) {
      const broker = await cluster.findBroker({ nodeId: leader })
      const resp = await broker.fetch({
        replicaId: -1,
        isolationLevel: 0,
        maxWaitTime: 500,
        minBytes: 1,
        maxBytes: 8 << 20,
        topics: [
          {
            topic,
            partitions: parts.map(p => ({ partition: p, fetchOffset: next.get(p), maxBytes: 1 << 20 })),
          },
        ],
      })
      for (const t of resp.responses) {
        for (const pr of t.partitions) {
          if (pr.errorCode !== 0) {
            process.stderr.write(`fetch error ${t.topicName}/${pr.partition}: ${pr.errorCode}\n`)
            continue
          }
          const from = BigInt(next.get(pr.partition))
          for (const m of pr.messages) {
            if (m.isControlRecord || BigInt(m.offset) < from) continue
            const headers = []
            for (const [k, v] of Object.entries(m.headers || {})) {
              for (const one of Array.isArray(v) ? v : [v]) headers.push([k, one == null ? null : one.toString('utf8')])
            }
            out.push(
              JSON.stringify({
                partition: pr.partition,
                offset: Number(m.offset),
                key: m.key == null ? null : m.key.toString('utf8'),
                value: m.value == null ? null : m.value.toString('utf8'),
                headers,
                timestamp: Number(m.timestamp),
              })
            )
            next.set(pr.partition, (BigInt(m.offset) + 1n).toString())
            got++
            progressed = true
          }
        }
      }
    }
    if (out.length) {
      process.stdout.write(out.join('\n') + '\n')
      out.length = 0
    }
    if (!progressed) await new Promise(r => setTimeout(r, 100))
  }
  await cluster.disconnect()
  process.stderr.write(`kafkajs consume: got=${got} expected=${expect}\n`)
  return got >= expect ? 0 : 1
}

// kafkajs ships only a round-robin assigner; this is Kafka's RangeAssignor for one or more topics
// (members sorted by id, each takes a contiguous range, the first ones one extra).
const RangeAssigner = ({ cluster }) => ({
  name: 'range',
  version: 0,
  async assign({ members, topics }) {
    const ids = members.map(m => m.memberId).sort()
    const assignment = Object.fromEntries(ids.map(id => [id, {}]))
    for (const topic of topics) {
      const parts = cluster.findTopicPartitionMetadata(topic).map(m => m.partitionId).sort((a, b) => a - b)
      const per = Math.floor(parts.length / ids.length)
      const extra = parts.length % ids.length
      let at = 0
      ids.forEach((id, i) => {
        const n = per + (i < extra ? 1 : 0)
        assignment[id][topic] = parts.slice(at, at + n)
        at += n
      })
    }
    return ids.map(memberId => ({
      memberId,
      memberAssignment: AssignerProtocol.MemberAssignment.encode({ version: 0, assignment: assignment[memberId] }),
    }))
  },
  protocol({ topics }) {
    return { name: this.name, metadata: AssignerProtocol.MemberMetadata.encode({ version: 0, topics }) }
  },
})

async function groupConsume(opts) {
  const bootstrap = req(opts, 'bootstrap')
  const topic = req(opts, 'topic')
  const group = req(opts, 'group')
  const member = req(opts, 'member-name')
  const assignorName = opts.assignor || 'range'
  const auto = (opts.commit || 'sync') === 'auto'
  const maxRecords = parseInt(opts['max-records'] || '0', 10)
  const idleExitS = parseFloat(opts['idle-exit-s'] || '0')
  const sessionMs = parseInt(opts['session-timeout-ms'] || '6000', 10)
  const timeoutS = parseFloat(opts['timeout-s'] || '600')
  const assigners = { range: RangeAssigner, roundrobin: PartitionAssigners.roundRobin }
  if (!(assignorName in assigners)) {
    process.stderr.write(`kafkajs client supports --assignor range|roundrobin, not ${assignorName}\n`)
    return 2
  }
  const line = obj => process.stdout.write(JSON.stringify(obj) + '\n')
  const owned = new Set()
  const partsEvent = (ev, ps) => {
    for (const p of ps) ev === 'assigned' ? owned.add(p) : owned.delete(p)
    const sorted = a => [...a].sort((x, y) => x - y)
    line({ event: ev, member, partitions: sorted(ps), owned: sorted(owned) })
  }

  const kafka = new Kafka({ clientId: member, brokers: [bootstrap], logLevel: logLevel.WARN, ...security() })
  const consumer = kafka.consumer({
    groupId: group,
    partitionAssigners: [assigners[assignorName]],
    sessionTimeout: sessionMs,
    heartbeatInterval: 1000,
    rebalanceTimeout: 30000,
    maxWaitTimeInMs: 500,
    allowAutoTopicCreation: false,
    retry: { retries: 10 },
  })
  // kafkajs rebalances eagerly: REBALANCING means everything is given up, GROUP_JOIN brings the
  // new full assignment.
  consumer.on(consumer.events.REBALANCING, () => {
    if (owned.size) partsEvent('revoked', [...owned])
  })
  consumer.on(consumer.events.GROUP_JOIN, e => {
    const now = (e.payload.memberAssignment || {})[topic] || []
    const gone = [...owned].filter(p => !now.includes(p))
    if (gone.length) partsEvent('revoked', gone)
    partsEvent('assigned', now.filter(p => !owned.has(p)))
  })
  consumer.on(consumer.events.CRASH, e => {
    process.stderr.write(`consumer crash: ${e.payload.error && e.payload.error.stack}\n`)
  })

  let got = 0
  const start = Date.now()
  let last = start
  let reason = null
  let resolveDone
  const done = new Promise(r => (resolveDone = r))
  const finish = why => {
    if (reason === null) {
      reason = why
      resolveDone()
    }
  }
  process.on('SIGTERM', () => finish('signal'))
  process.on('SIGINT', () => finish('signal'))
  const timer = setInterval(() => {
    if (maxRecords && got >= maxRecords) finish('max-records')
    else if (idleExitS && Date.now() - last > idleExitS * 1000) finish('idle')
    else if (Date.now() - start > timeoutS * 1000) finish('timeout')
  }, 100)

  await consumer.connect()
  await consumer.subscribe({ topic, fromBeginning: true })
  await consumer.run({
    autoCommit: auto,
    autoCommitInterval: 1000,
    eachBatchAutoResolve: false,
    eachBatch: async ({ batch, resolveOffset, heartbeat, isRunning, isStale }) => {
      let next = null
      for (const m of batch.messages) {
        if (!isRunning() || isStale() || reason !== null) break
        if (maxRecords && got >= maxRecords) break
        const headers = []
        for (const [k, v] of Object.entries(m.headers || {})) {
          for (const one of Array.isArray(v) ? v : [v]) headers.push([k, one == null ? null : one.toString('utf8')])
        }
        line({
          event: 'record',
          member,
          partition: batch.partition,
          offset: Number(m.offset),
          key: m.key == null ? null : m.key.toString('utf8'),
          value: m.value == null ? null : m.value.toString('utf8'),
          headers,
          timestamp: Number(m.timestamp),
        })
        resolveOffset(m.offset)
        next = (BigInt(m.offset) + 1n).toString()
        got++
        last = Date.now()
      }
      if (!auto && next !== null) {
        try {
          await consumer.commitOffsets([{ topic, partition: batch.partition, offset: next }])
          line({ event: 'committed', member, offsets: { [String(batch.partition)]: Number(next) } })
        } catch (e) {
          line({ event: 'commit_failed', member, error: String(e) })
          process.stderr.write(`commit failed: ${e}\n`)
        }
      }
      await heartbeat()
    },
  })
  await done
  clearInterval(timer)
  line({ event: 'exit', member, reason, consumed: got })
  // kafkajs retries a disconnect forever when the broker is gone; give up after 30 s
  setTimeout(() => {
    process.stderr.write('kafkajs disconnect did not finish in 30 s\n')
    process.exit(1)
  }, 30000).unref()
  await consumer.disconnect() // commits (auto mode) and sends LeaveGroup
  if (owned.size) partsEvent('revoked', [...owned])
  process.stderr.write(`kafkajs group-consume ${member}: got=${got} exit=${reason}\n`)
  return 0
}

async function main() {
  const [cmd, ...rest] = process.argv.slice(2)
  if (!cmd || cmd === '--help' || cmd === '-h') usage(cmd ? 0 : 2)
  const opts = parseArgs(rest)
  if (cmd === 'produce') return produce(opts)
  if (cmd === 'consume') return consume(opts)
  if (cmd === 'group-consume') return groupConsume(opts)
  usage(2)
}

main().then(
  code => {
    process.exitCode = code
  },
  err => {
    process.stderr.write(`error: ${err && err.stack ? err.stack : err}\n`)
    process.exitCode = 1
  }
)
