#!/usr/bin/env node
// Spate test client (Node.js, kafkajs 2.x).
//
//   produce --bootstrap H:P --topic T --count N --acks all|1 --codec gzip --client NAME
//   consume --bootstrap H:P --topic T --partitions P --expect N --timeout-s S
//
// kafkajs ships only gzip (snappy/lz4/zstd need third-party codecs), so --codec must be gzip or none.
// kafkajs has no group-less consumer: its Consumer always joins a group, and Spate has no groups
// yet. `consume` therefore drives kafkajs's own Cluster/Broker layer (Metadata, ListOffsets, Fetch
// encoding and RecordBatch decoding/decompression all stay kafkajs's) with assign-style offsets.
'use strict'

process.env.KAFKAJS_NO_PARTITIONER_WARNING = '1'

const { Kafka, CompressionTypes, logLevel } = require('kafkajs')
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
  const kafka = new Kafka({ clientId: client, brokers: [bootstrap], logLevel: logLevel.WARN })
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

async function main() {
  const [cmd, ...rest] = process.argv.slice(2)
  if (!cmd || cmd === '--help' || cmd === '-h') usage(cmd ? 0 : 2)
  const opts = parseArgs(rest)
  if (cmd === 'produce') return produce(opts)
  if (cmd === 'consume') return consume(opts)
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
