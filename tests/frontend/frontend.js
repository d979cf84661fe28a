// The portal frontend's side of the shared database: the seed's Mongoose schemas
// (../../../shared/seeds/schemas.md) as NestJS's SchemaFactory builds them, driven by
// tests/frontend/test_frontend_mongoose.py with a real Mongoose 8.
//
//   node frontend.js init  <uri>          Model.init() of every model (autoCreate + autoIndex);
//                                         prints {"indexes": {collection: [index, ...]}}
//   node frontend.js write <uri> <json>   creates {client, account, posts: [...]} through the
//                                         models; prints {"client", "account", "posts": [ids]}
//   node frontend.js edit  <uri> <json>   {post, set}: findById, set the fields, save() — as an
//                                         editor does; prints {"updatedAt", "stored": the raw document}
//
// A post whose scheduleTime is a string is written through a model typing it as a String, as
// a frontend following the shared IPost interface (scheduleTime?: string) stores it.
'use strict';

const mongoose = require('mongoose');
const { Schema } = mongoose;

const PLATFORMS = ['facebook', 'instagram', 'linkedin', 'google-business', 'website'];

function platformMap(type) {
  return Object.fromEntries(PLATFORMS.map((p) => [p, { type }]));
}

const UserSchema = new Schema(
  {
    email: { type: String, unique: true, index: true },
    password: String,
    name: String,
    tenantIds: { type: [String], default: [] },
    role: { type: String, default: 'clientViewer' },
    oauthAccounts: {
      type: [{ provider: { type: String }, providerId: { type: String }, profile: { type: Object } }],
      default: [],
    },
  },
  { timestamps: true },
);

const ClientSchema = new Schema(
  {
    name: { type: String, required: true },
    slug: { type: String, unique: true, index: true },
    timezone: { type: String, default: 'UTC' },
    brandSettings: {
      type: {
        logoUrl: { type: String },
        primaryColor: { type: String },
        secondaryColor: { type: String },
        fonts: { type: [String], default: [] },
      },
      default: {},
    },
    brandGuidelines: { type: String },
    hashtagBank: { type: [String], default: [] },
    ctaTemplates: { type: [{ label: String, text: String }], default: [] },
    defaultPostingWindows: { type: [{ dayOfWeek: Number, start: String, end: String }], default: [] },
  },
  { timestamps: true },
);

const IntegrationAccountSchema = new Schema(
  {
    clientId: { type: String, required: true, index: true },
    platform: { type: String, required: true },
    accountName: String,
    externalAccountId: String,
    accessToken: String,
    refreshToken: String,
    expiresAt: Date,
    status: { type: String, default: 'connected' },
    metadata: { type: Object, default: {} },
  },
  { timestamps: true },
);

const CampaignSchema = new Schema(
  {
    clientId: { type: String, required: true, index: true },
    name: { type: String, required: true },
    description: String,
    startDate: Date,
    endDate: Date,
    tags: { type: [String], default: [] },
  },
  { timestamps: true },
);

function postSchema(scheduleTimeType) {
  return new Schema(
    {
      clientId: { type: String, required: true, index: true },
      campaignId: { type: String, index: true },
      title: { type: String, required: true },
      body: { type: String, required: true },
      platforms: { type: [String], default: [] },
      assetUrls: { type: [String], default: [] },
      status: { type: String, default: 'draft' },
      scheduleTime: scheduleTimeType,
      platformPostIds: { type: platformMap(String), default: {} },
      publishedAt: { type: platformMap(Date), default: {} },
      createdById: String,
      approvedById: String,
      statusHistory: {
        type: [{ at: Date, fromStatus: String, toStatus: String, byUserId: String, note: String }],
        default: [],
      },
      lastError: String,
    },
    { timestamps: true },
  );
}

const AnalyticsRecordSchema = new Schema(
  {
    clientId: { type: String, required: true, index: true },
    postId: { type: String, required: true, index: true },
    platform: { type: String, required: true },
    metrics: {
      type: {
        impressions: { type: Number, default: 0 },
        reach: { type: Number, default: 0 },
        clicks: { type: Number, default: 0 },
        likes: { type: Number, default: 0 },
        comments: { type: Number, default: 0 },
        shares: { type: Number, default: 0 },
        saves: { type: Number, default: 0 },
      },
      default: {},
    },
    fetchedAt: { type: Date, required: true },
  },
  { timestamps: true },
);

const AssetSchema = new Schema(
  {
    clientId: { type: String, required: true, index: true },
    type: { type: String, required: true },
    url: { type: String, required: true },
    filename: String,
    altText: String,
    tags: { type: [String], default: [] },
    folder: String,
  },
  { timestamps: true },
);

const User = mongoose.model('User', UserSchema);
const Client = mongoose.model('Client', ClientSchema);
const IntegrationAccount = mongoose.model('IntegrationAccount', IntegrationAccountSchema);
const Campaign = mongoose.model('Campaign', CampaignSchema);
const Post = mongoose.model('Post', postSchema(Date));
const AnalyticsRecord = mongoose.model('AnalyticsRecord', AnalyticsRecordSchema);
const Asset = mongoose.model('Asset', AssetSchema);
// Same collection, scheduleTime typed as the shared IPost types it. No indexes of its own.
const PostWithStringTime = mongoose.model('PostWithStringTime', postSchema(String), 'posts');

const MODELS = [User, Client, IntegrationAccount, Campaign, Post, AnalyticsRecord, Asset];

async function init() {
  await Promise.all(MODELS.map((model) => model.init()));
  const indexes = {};
  for (const model of MODELS) {
    indexes[model.collection.collectionName] = await model.collection.listIndexes().toArray();
  }
  return { indexes };
}

async function write(spec) {
  const client = await Client.create(spec.client);
  const account = await IntegrationAccount.create({ ...spec.account, clientId: String(client._id) });
  const posts = [];
  for (const fields of spec.posts || []) {
    const model = typeof fields.scheduleTime === 'string' ? PostWithStringTime : Post;
    const doc = { ...fields, clientId: String(client._id) };
    if (model === Post && doc.scheduleTime) doc.scheduleTime = new Date(doc.scheduleTime.$date);
    const post = await model.create(doc);
    posts.push(String(post._id));
  }
  return { client: String(client._id), account: String(account._id), posts };
}

async function edit(spec) {
  const post = await Post.findById(spec.post);
  post.set(spec.set);
  await post.save();
  const stored = await Post.collection.findOne({ _id: post._id });
  return { updatedAt: post.updatedAt.toISOString(), stored };
}

const COMMANDS = { init: () => init(), write: (spec) => write(spec), edit: (spec) => edit(spec) };

async function main() {
  const [command, uri, json] = process.argv.slice(2);
  // autoIndex (Mongoose's default) is what creates the schema indexes on init().
  await mongoose.connect(uri, { autoIndex: true, serverSelectionTimeoutMS: 10000 });
  try {
    const result = await COMMANDS[command](json ? JSON.parse(json) : undefined);
    process.stdout.write(JSON.stringify(result) + '\n');
  } finally {
    await mongoose.disconnect();
  }
}

main().catch((err) => {
  process.stderr.write(`${err.name}: ${err.message}${err.code ? ` (code ${err.code})` : ''}\n`);
  process.exit(1);
});
