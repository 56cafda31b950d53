// /v1/quality-metrics: the image-quality metrics runs and generations may ask for, and which
// of them this server has the networks of (METRICS_MODELS_DIR).
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { problemResponses } from '../../../schemas/problem.js';
import { QualityMetricList } from '../../../schemas/quality-metrics.js';

const qualityMetricRoutes: FastifyPluginAsyncTypebox = async (fastify) => {
  const qualityMetrics = fastify.services.qualityMetrics;

  fastify.get(
    '',
    {
      schema: {
        operationId: 'listQualityMetrics',
        tags: ['quality-metrics'],
        summary: 'List quality metrics',
        description:
          'Every image-quality metric (clip_t, clip_i, hps, lpips, fid, kid, is): what it measures, the network it needs, and ' +
          'whether this server has that network under METRICS_MODELS_DIR (the weights are never downloaded: the operator puts ' +
          'them there). A training run may ask the available ones (params.validation.metrics; a missing one is refused, 422 ' +
          'metric-unavailable), a generation any (evaluation.metrics; a missing one is reported unavailable).',
        response: { 200: QualityMetricList, ...problemResponses(401, 500, 503) },
      },
    },
    async () => ({ data: qualityMetrics.list() }),
  );
};

export default qualityMetricRoutes;
